/*
 * The sandbox pool of the Worker tab, kept in a process of its own: a SandboxPool in the frame
 * sandbox-host.html (see sandbox-host.js), spoken to over a MessageChannel. IsolatedPool has
 * SandboxPool's methods (run, abortJob, resize, terminate, stats, size), so the supervisor does
 * not know which it has.
 *
 *   const pool = new IsolatedPool({ size: 2, sandboxURL, pyodideURL });
 *   const { value } = await pool.run(job, slice, datum, { onProgress, onConsole, timeoutMs, uploadTicket });
 *
 * Why. Chromium ends the whole renderer process when a worker passes its JavaScript heap limit,
 * and no API shows how much heap a busy worker holds. With the sandboxes in the tab's own
 * process, a JS work function that allocates without end took the Worker tab down. In an
 * <iframe sandbox="allow-scripts"> (an opaque origin) they live in a renderer of their own,
 * whose crash the tab survives.
 *
 * Blobs. The frame's sandboxes get a job's blobs and wheels from this page (fetchBlob through
 * the frame, see sandbox-host.js), which keeps them in a StoreCache (store-cache.js): this page
 * is of the portal's origin, so the browser's HTTP cache backs it too, which the frame's opaque
 * origin has not. A job computed on several cores, or a later job with the same package, fetches
 * nothing again.
 *
 * Crashes. The frame answers a ping every HEARTBEAT_MS at once (its event loop only passes
 * messages; slices run in workers). A ping unanswered for CRASH_AFTER_MS, on two ticks in a row
 * (so that a tab whose own thread was busy does not read its late replies as silence), means
 * the frame's process is gone: every slice given to it fails with SandboxCrashed, and a fresh
 * frame is loaded (a fresh pool: a new reserve, a new Pyodide snapshot). So is a frame that
 * does not say hello within START_MS; after such a failed start the next one waits for the next
 * run(). Which slice exhausted the memory cannot be told: every slice that was in the frame
 * fails alike, and the scheduler's rules (a slice is retried once) sort it out.
 *
 * Snapshots. The frame's first sandbox that loads Pyodide takes a memory snapshot of it
 * (sandbox-pool.js), which the frame sends here; this page keeps it in IndexedDB
 * (snapshot-store.js: the frame's opaque origin has no storage) and passes it to every frame it
 * connects, in this visit or a later one, whose reserve then starts Pyodide from it before the
 * first job comes, without booting Python (about 2 s). A stored snapshot that did not restore is
 * deleted, and the new one the frame took instead replaces it. `storedSnapshots: null` keeps none.
 */

import { SliceError } from "./sandbox-pool.js";
import { StoredSnapshots } from "./snapshot-store.js";
import { StoreCache } from "./store-cache.js";
import { callQuietly } from "./util.js";

const HEARTBEAT_MS = 500;
const CRASH_AFTER_MS = 2_000;
const START_MS = 30_000;
const HOST_PAGE = "sandbox-host.html"; // beside sandbox.js
const STORED_SNAPSHOT_WAIT_MS = 3_000; // the frame is connected without it if IndexedDB is slower

/** The blobs, wheels and Pyodide package files of the portal that serves sandbox.js, fetched
 * once for every sandbox and job of the pool: the store is on sandbox.js's origin, this page's. */
function storeCacheSource(sandboxURL, pyodideURL) {
  const cache = new StoreCache({ storeURL: new URL("/store/", sandboxURL).href, pyodideURL });
  return (sha256, file) => cache.get(sha256, file);
}

export class IsolatedPool {
  #options;
  #size;
  #host = null; // {frame, port, started, sentAt: Map(ping id -> ms), overdueTicks, timer, bornAt}
  #pending = new Map(); // run id -> {job, slice, resolve, reject, onProgress, onConsole}
  #nextId = 0;
  #stats = [];
  #closed = false;
  #onMessage = (event) => this.#onWindowMessage(event);

  #blobSource;
  #storedSnapshots;
  #snapshotKey;

  /** Takes SandboxPool's options; `container` is where the frame goes (default: document.body).
   * `blobSource` stays in this page (by default a StoreCache of the portal's store, kept for the
   * pool's life): the frame's sandboxes ask it through the frame. `storedSnapshots` keeps the
   * Pyodide snapshot across visits (default: a StoredSnapshots of this origin; null: none). */
  constructor({ container = null, blobSource = null, storedSnapshots = new StoredSnapshots(), ...options }) {
    if (!options.sandboxURL || !options.pyodideURL) throw new TypeError("IsolatedPool needs sandboxURL and pyodideURL");
    this.#blobSource = blobSource ?? storeCacheSource(options.sandboxURL, options.pyodideURL);
    this.#storedSnapshots = storedSnapshots;
    this.#snapshotKey = `${options.sandboxURL}\n${options.pyodideURL}`;
    this.#options = { ...options, blobsFromTab: true };
    this.#size = Math.max(1, options.size ?? 1);
    this.container = container;
    globalThis.addEventListener("message", this.#onMessage);
    this.#startHost();
  }

  get size() {
    return this.#size;
  }

  /** SandboxPool.stats() of the frame, as of its last reply. */
  stats() {
    return this.#stats;
  }

  run(job, slice, datum, { onProgress, onConsole, timeoutMs, uploadTicket } = {}) {
    return new Promise((resolve, reject) => {
      if (this.#closed) {
        reject(new SliceError({ name: "Terminated", message: "the sandbox pool was terminated", jobId: job?.id ?? null, slice }));
        return;
      }
      if (!this.#host) this.#startHost();
      this.#nextId += 1;
      const id = this.#nextId;
      this.#pending.set(id, { job, slice, resolve, reject, onProgress, onConsole });
      this.#send({ type: "run", id, job, slice, datum, timeoutMs, uploadTicket });
    });
  }

  abortJob(jobId, message = `job ${jobId} was aborted`) {
    this.#failWhere((run) => run.job?.id === jobId, (run) => ({ name: "Aborted", message, jobId, slice: run.slice }));
    this.#send({ type: "abortJob", jobId, message });
  }

  resize(size) {
    this.#size = Math.max(1, size);
    this.#options = { ...this.#options, size: this.#size };
    this.#send({ type: "resize", size: this.#size });
  }

  /** Whether jobs that start from now on may use WebGPU (SandboxPool.setGpu in the frame). */
  setGpu(on) {
    this.#options = { ...this.#options, gpu: Boolean(on) };
    this.#send({ type: "gpu", on: Boolean(on) });
  }

  terminate() {
    this.#closed = true;
    this.#failWhere(() => true, (run) => ({ name: "Terminated", message: "the sandbox pool was terminated",
                                            jobId: run.job?.id ?? null, slice: run.slice }));
    this.#send({ type: "terminate" });
    this.#stopHost();
    globalThis.removeEventListener("message", this.#onMessage);
  }

  // ------------------------------------------------------------------------------ frame

  #startHost() {
    const frame = document.createElement("iframe");
    frame.sandbox = "allow-scripts"; // an opaque origin: a process of its own
    frame.allow = "cross-origin-isolated"; // SharedArrayBuffer, where the tab has it
    frame.hidden = true;
    frame.title = "DCP sandboxes";
    frame.src = new URL(HOST_PAGE, this.#options.sandboxURL).href;
    const channel = new MessageChannel();
    const host = { frame, port: channel.port1, remotePort: channel.port2, started: false, greeted: false,
                   sentAt: new Map(), overdueTicks: 0, timer: null, bornAt: performance.now(), nextPing: 0,
                   stored: this.#loadStoredSnapshot() };
    host.port.onmessage = ({ data }) => this.#onReply(host, data);
    host.timer = setInterval(() => this.#heartbeat(host), HEARTBEAT_MS);
    this.#host = host;
    (this.container ?? document.body).append(frame);
  }

  #stopHost() {
    const host = this.#host;
    if (!host) return;
    this.#host = null;
    clearInterval(host.timer);
    host.port.close();
    host.frame.remove();
  }

  /** The frame's hello: it gets its end of the channel (messages sent meanwhile wait in it), and
   * the stored snapshot, once read (its heartbeat starts then: it has not been connected before). */
  async #onWindowMessage(event) {
    const host = this.#host;
    if (!host || host.greeted || event.source !== host.frame.contentWindow || event.data?.type !== "hello") return;
    host.greeted = true;
    const stored = await host.stored;
    if (host !== this.#host) return;
    host.started = true;
    const options = { ...this.#options, size: this.#size, storedSnapshot: stored };
    const transfer = stored ? [host.remotePort, stored.snapshot] : [host.remotePort];
    host.frame.contentWindow.postMessage({ type: "connect", port: host.remotePort, options }, "*", transfer);
  }

  /** The stored snapshot for a frame about to load, or null (none, or not read in time). */
  #loadStoredSnapshot() {
    if (!this.#storedSnapshots) return Promise.resolve(null);
    let timer;
    const late = new Promise((resolve) => {
      timer = setTimeout(() => resolve(null), STORED_SNAPSHOT_WAIT_MS);
    });
    const read = this.#storedSnapshots.load(this.#snapshotKey).catch(() => null);
    return Promise.race([read, late]).finally(() => clearTimeout(timer));
  }

  /** What the frame's pool says of its snapshot (SandboxPool's onSnapshot): kept, or forgotten. */
  #onSnapshot({ event, tag, snapshot }) {
    const stored = this.#storedSnapshots;
    if (event === "made" && snapshot instanceof ArrayBuffer) stored?.save(this.#snapshotKey, { snapshot, tag });
    else if (event === "refused") stored?.drop(this.#snapshotKey, tag);
    else if (event === "restored") console.info(`dcp sandboxes: Pyodide started from the stored snapshot ${tag}`);
    if (event === "made") console.info(`dcp sandboxes: took a Pyodide snapshot ${tag}`);
  }

  #send(message) {
    this.#host?.port.postMessage(message);
  }

  #heartbeat(host) {
    const now = performance.now();
    if (!host.started) {
      if (now - host.bornAt > START_MS) this.#lost(host, `the sandboxes' frame did not start within ${START_MS / 1000} s`, { restart: false });
      return;
    }
    const oldest = Math.min(...host.sentAt.values());
    host.overdueTicks = now - oldest > CRASH_AFTER_MS ? host.overdueTicks + 1 : 0;
    if (host.overdueTicks >= 2) {
      this.#lost(host, `the sandboxes' process stopped answering for ${Math.round((now - oldest) / 100) / 10} s `
        + "(it crashed: most likely a work function used more memory than the browser allows)", { restart: true });
      return;
    }
    host.nextPing += 1;
    host.sentAt.set(host.nextPing, now);
    host.port.postMessage({ type: "ping", id: host.nextPing });
  }

  #onReply(host, data) {
    if (host !== this.#host || !data || typeof data !== "object") return;
    if (data.stats) this.#stats = data.stats;
    if (data.type === "pong") {
      for (const id of host.sentAt.keys()) if (id <= data.id) host.sentAt.delete(id);
      return;
    }
    if (data.type === "fetchBlob") {
      this.#answerBlob(host, data);
      return;
    }
    if (data.type === "snapshot") {
      this.#onSnapshot(data);
      return;
    }
    const run = this.#pending.get(data.id);
    if (!run) return; // given up on already (aborted)
    if (data.type === "progress") callQuietly(run.onProgress, data.value);
    else if (data.type === "console") callQuietly(run.onConsole, data.line);
    else if (data.type === "done") {
      this.#pending.delete(data.id);
      run.resolve({ value: data.value, gpuMs: data.gpuMs });
    } else if (data.type === "failed") {
      this.#pending.delete(data.id);
      run.reject(new SliceError({ ...data.error, jobId: run.job?.id ?? null, slice: run.slice }));
    }
  }

  /** A blob a sandbox of the frame asked for, from blobSource (posted as a copy). */
  #answerBlob(host, { ask, sha256, file }) {
    const send = (answer) => {
      if (host === this.#host) host.port.postMessage({ type: "blob", ask, ...answer });
    };
    Promise.resolve()
      .then(() => this.#blobSource(sha256 ?? null, file ?? null))
      .then((bytes) => send({ bytes }), (error) => send({ error: String(error?.message ?? error) }));
  }

  /** The frame is gone: every slice it held fails with SandboxCrashed; a fresh one is loaded. */
  #lost(host, why, { restart }) {
    if (host !== this.#host) return;
    this.#stopHost();
    this.#stats = [];
    this.#failWhere(() => true, (run) => ({
      name: "SandboxCrashed",
      message: `slice ${run.slice} of job ${run.job?.id} was lost with its sandbox: ${why}`,
      jobId: run.job?.id ?? null,
      slice: run.slice,
    }));
    if (restart && !this.#closed) this.#startHost();
  }

  #failWhere(predicate, errorFor) {
    for (const [id, run] of [...this.#pending]) {
      if (!predicate(run)) continue;
      this.#pending.delete(id);
      run.reject(new SliceError(errorFor(run)));
    }
  }
}
