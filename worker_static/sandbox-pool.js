/*
 * The page side of the sandboxes: a pool of module Web Workers running sandbox.js.
 *
 *   import { SandboxPool, SliceError } from "./sandbox-pool.js";
 *   const pool = new SandboxPool({ size: 2, sandboxURL, pyodideURL });
 *   try {
 *     const { value } = await pool.run(job, slice, datum, { onProgress, onConsole, timeoutMs, uploadTicket });
 *   } catch (error) {
 *     // error is a SliceError: {name, message, traceback, jobId, slice}
 *   }
 *
 * `job` is {id, language: "python"|"js", source: "<source>", args: [...], packages, pyodide, fs}
 * (the last three: a Python job's packages and files, as the `task` message's job has them). run() resolves to
 * {value} and rejects with a SliceError whose `name` is the work function's exception class
 * (ZeroDivisionError, TypeError for a result that is not JSON-serialisable, ValueError for a bad
 * progress value, ...) or one of the pool's own:
 *
 *   NoProgress      the slice reported no progress for timeoutMs; its sandbox was interrupted
 *                   (Python, when the page is cross-origin isolated) or terminated and replaced
 *   OutOfMemory     the slice asked for more WebAssembly memory than memoryLimitBytes; its
 *                   sandbox was terminated and replaced (see "Memory" below)
 *   Aborted         abortJob() was called for the job
 *   Terminated      terminate() was called
 *   InitTimeout     loading Pyodide or compiling the work function took longer than initTimeoutMs
 *   SandboxCrashed  the sandbox worker died or failed to start
 *
 * onProgress(value) gets 0..1 or null (indeterminate); onConsole({level, message, slice})
 * gets print()/console output, with slice null for output of the work function's
 * module-level code. `uploadTicket` (the `upload_ticket` of the slice's task) lets the sandbox
 * store a result too big for a `result` frame in the portal's store and send a reference
 * instead (RESULT_INLINE_LIMIT_BYTES; see "Blobs" in sandbox.js); without it such a result
 * stays inline, and batching.js reports it as ResultTooLarge.
 *
 * One sandbox, one job. A sandbox that has been given a job computes that job's slices and no
 * other job's, ever: a slice goes to an idle sandbox of its own job, else to a fresh sandbox.
 * At most `size` sandboxes hold jobs; when they all do and another job needs one, the least
 * recently used idle sandbox of another job is terminated to make room (its job has no slice
 * waiting), and so is a sandbox whose job has had no slice for idleMs or was aborted. Beside
 * them the pool keeps one fresh sandbox in reserve (so at most size + 1 Workers live): started
 * ahead of need, connected, and, once the pool has run a Python job, with Pyodide and the
 * runtime loaded, so that a job switch costs the compile of the work function, not a start.
 * The first sandbox of the page that loads Pyodide takes a memory snapshot of it before any job
 * code runs (see sandbox.js); every later sandbox of the page starts Pyodide from it. A page may
 * keep the snapshot for later visits (onSnapshot) and hand it to the next page's pool
 * (storedSnapshot): that pool's reserve starts Pyodide from it at once, before any job comes,
 * and a snapshot of another runtime (its tag differs) or one that fails to restore is replaced by
 * a new one, taken by the sandbox that tried it.
 *
 * Memory. A sandbox refuses to grow its WebAssembly memory (a Python job's whole heap) past
 * memoryLimitBytes (MAX_SANDBOX_MEMORY_BYTES of the protocol) and says so at once, even from a
 * slice that never yields. The slice then fails with OutOfMemory: when it ends (it usually
 * raises MemoryError, whose traceback is kept), or interruptGraceMs after the refusal if it
 * goes on. Either way its sandbox is terminated, which gives the memory back, and the job's next
 * slice gets a fresh one. A sandbox that runs out of memory between slices is simply replaced.
 *
 * Between requests, a sandbox that has run job code sleeps until the pool sends it the next one
 * (the "doorbell", where the page is cross-origin isolated): timers and other code that a job
 * leaves behind run only while that job's own slices do (see sandbox.js).
 */

import { MAX_FRAME_BYTES, MAX_SANDBOX_MEMORY_BYTES } from "./protocol.js";
import { callQuietly, formatBytes } from "./util.js";

const DEFAULT_TIMEOUT_MS = 60_000;
const DEFAULT_INIT_TIMEOUT_MS = 120_000;
const DEFAULT_INTERRUPT_GRACE_MS = 2_000;
const DEFAULT_IDLE_MS = 30_000;
// Reserves that may fail to start in a row; then the pool keeps none until an init succeeds.
const RESERVE_FAILURES_TOLERATED = 2;
const SIGINT = 2;
const FINAL_REPLIES = new Set(["ready", "result", "error"]);
// A result whose JSON is larger goes by reference through the portal's store: batching.js keeps
// a `result` frame 64 KiB under MAX_FRAME_BYTES, and this leaves as much again for the frame's
// own fields.
const RESULT_INLINE_LIMIT_BYTES = MAX_FRAME_BYTES - 128 * 1024;

// What the pool needs to know of each work-function runtime; a job of another language is
// treated as Python. Pyodide-backed runtimes make the reserve load Pyodide ahead of need, and
// can be interrupted (through the interrupt buffer) instead of losing their sandbox.
const RUNTIMES = Object.freeze({
  python: Object.freeze({ usesPyodide: true, interruptible: true }),
  js: Object.freeze({ usesPyodide: false, interruptible: false }),
});

function runtimeOf(job) {
  return Object.hasOwn(RUNTIMES, job.language) ? RUNTIMES[job.language] : RUNTIMES.python;
}

/** Why a slice did not produce a result; toJSON() gives the {name, message, traceback} shape. */
export class SliceError extends Error {
  constructor({ name = "Error", message = "", traceback = "", jobId = null, slice = null } = {}) {
    super(message);
    this.name = name;
    this.traceback = traceback;
    this.jobId = jobId;
    this.slice = slice;
  }

  toJSON() {
    return { name: this.name, message: this.message, traceback: this.traceback };
  }
}

function sliceError(name, task, message) {
  return new SliceError({ name, message, jobId: task.job.id, slice: task.slice });
}

function defaultSize() {
  return Math.max(1, (globalThis.navigator?.hardwareConcurrency ?? 2) - 1);
}

function isolated() {
  // SharedArrayBuffer exists only where the page is cross-origin isolated (COOP + COEP).
  return Boolean(globalThis.crossOriginIsolated) && typeof SharedArrayBuffer === "function";
}

function newInterruptBuffer() {
  return isolated() ? new Uint8Array(new SharedArrayBuffer(1)) : null;
}

function newDoorbell() {
  // [requests sent, let go] (see sandbox.js, "Between requests")
  return isolated() ? new Int32Array(new SharedArrayBuffer(8)) : null;
}

function outOfMemoryError(task, { bytes, limitBytes }, cause = null) {
  return new SliceError({
    name: "OutOfMemory",
    message: `slice ${task.slice} of job ${task.job.id} ran out of memory: it asked for ${formatBytes(bytes)} `
      + `of WebAssembly memory, more than the ${formatBytes(limitBytes)} a sandbox may use`,
    traceback: cause?.traceback ?? "",
    jobId: task.job.id,
    slice: task.slice,
  });
}

// ------------------------------------------------------------------------------ snapshots

const MAKING = Symbol("a sandbox is taking the snapshot");
const UNAVAILABLE = Symbol("no snapshot: taking or restoring one failed");

/** Pyodide memory snapshots by sandbox and Pyodide URL, shared by every pool of the page: one
 * sandbox takes it (before any job code runs in it), every later one starts from it. A snapshot
 * the page kept from an earlier visit (seed) is tried by one sandbox first, which takes a new one
 * if it does not start from it. Listeners hear of each snapshot taken, of the seeded one that
 * restored, and of one that did not ({event: "made"|"restored"|"refused", tag, snapshot?}). */
class SnapshotStore {
  #entries = new Map(); // key -> {snapshot, tag, proven} | MAKING | UNAVAILABLE
  #trials = new Map(); // key -> the seeded entry a sandbox is trying, while MAKING
  #waiters = new Map(); // key -> [resolve, ...] waiting while MAKING
  #listeners = new Map(); // key -> Set of (event) => void

  /** A snapshot kept from an earlier visit, unless there is one (or one is being taken). */
  seed(key, { snapshot, tag }) {
    if (this.#entries.has(key) || !(snapshot instanceof ArrayBuffer) || typeof tag !== "string") return false;
    this.#entries.set(key, { snapshot, tag, proven: false });
    return true;
  }

  /** Options for a sandbox about to load Pyodide: {snapshot, snapshotTag, makeSnapshot?},
   * {makeSnapshot: true} or {}. */
  claim(key) {
    const entry = this.#entries.get(key);
    if (entry === MAKING || entry === UNAVAILABLE) return {};
    if (entry === undefined) {
      this.#entries.set(key, MAKING);
      return { makeSnapshot: true };
    }
    const options = { snapshot: entry.snapshot, snapshotTag: entry.tag }; // postMessage copies it
    if (entry.proven) return options;
    this.#trials.set(key, entry);
    this.#entries.set(key, MAKING);
    return { ...options, makeSnapshot: true };
  }

  /** Resolves once no sandbox is taking the snapshot of `key`. */
  settled(key) {
    if (this.#entries.get(key) !== MAKING) return Promise.resolve();
    return new Promise((resolve) => {
      this.#waiters.set(key, [...(this.#waiters.get(key) ?? []), resolve]);
    });
  }

  /** What the sandbox asked to take the snapshot gave: the snapshot and its tag, or null. */
  offer(key, snapshot, tag = null) {
    if (this.#entries.get(key) !== MAKING) return;
    const trial = this.#trials.get(key);
    this.#trials.delete(key);
    if (snapshot instanceof ArrayBuffer) {
      this.#settle(key, { snapshot, tag, proven: true });
      if (typeof tag === "string") this.#tell(key, { event: "made", snapshot, tag });
    } else {
      this.#settle(key, UNAVAILABLE);
      if (trial) this.#tell(key, { event: "refused", tag: trial.tag });
    }
  }

  /** The sandbox trying the seeded snapshot started from it: so will every later one. */
  restored(key) {
    const trial = this.#trials.get(key);
    if (this.#entries.get(key) !== MAKING || !trial) return;
    this.#trials.delete(key);
    this.#settle(key, { ...trial, proven: true });
    this.#tell(key, { event: "restored", tag: trial.tag });
  }

  /** The sandbox asked to take it stopped before it did: another may try (a new one). */
  release(key) {
    if (this.#entries.get(key) !== MAKING) return;
    this.#trials.delete(key);
    this.#settle(key, undefined);
  }

  /** A sandbox could not start from the snapshot: later ones start without it. */
  refuse(key) {
    const entry = this.#entries.get(key);
    this.#trials.delete(key);
    this.#settle(key, UNAVAILABLE);
    if (typeof entry?.tag === "string") this.#tell(key, { event: "refused", tag: entry.tag });
  }

  listen(key, listener) {
    this.#listeners.set(key, new Set([...(this.#listeners.get(key) ?? []), listener]));
  }

  unlisten(key, listener) {
    this.#listeners.get(key)?.delete(listener);
  }

  #tell(key, event) {
    for (const listener of this.#listeners.get(key) ?? []) callQuietly(listener, event);
  }

  #settle(key, entry) {
    if (entry === undefined) this.#entries.delete(key);
    else this.#entries.set(key, entry);
    const waiters = this.#waiters.get(key) ?? [];
    this.#waiters.delete(key);
    for (const resolve of waiters) resolve();
  }
}

const snapshots = new SnapshotStore();

// -------------------------------------------------------------------------------- sandbox

const bootstraps = new Map(); // sandboxURL -> data: URL of its bootstrap (see startWorker)

/** A Worker running sandbox.js. A page of an opaque origin (the sandboxes' own frame,
 * sandbox-host.js) may not start a worker from the portal's URL, so there the worker is a
 * classic one from a data: URL that imports sandbox.js and hands it the messages that arrived
 * while it loaded. A data: URL rather than a blob: one: a worker from a blob: URL made by an
 * opaque origin is not a secure context, so it would have no WebGPU (navigator.gpu). Such a
 * worker takes its Content-Security-Policy from the page that starts it (the frame's, which is
 * the sandbox's; worker_files.py). */
function startWorker(sandboxURL, name) {
  if (new URL(sandboxURL).origin === globalThis.origin) return new Worker(sandboxURL, { type: "module", name });
  if (!bootstraps.has(sandboxURL)) {
    const source = `const held = [];
const hold = (event) => held.push(event.data);
self.addEventListener("message", hold);
import(${JSON.stringify(sandboxURL)}).then(() => {
  self.removeEventListener("message", hold);
  for (const data of held) self.dispatchEvent(new MessageEvent("message", { data }));
}, (error) => setTimeout(() => { throw error; }));
`;
    bootstraps.set(sandboxURL, `data:text/javascript,${encodeURIComponent(source)}`);
  }
  return new Worker(bootstraps.get(sandboxURL), { name });
}

/** One module Worker running sandbox.js, spoken to over a private MessagePort. `onCrash(sandbox,
 * message)`: the worker died; `onOutOfMemory(sandbox, {bytes, limitBytes})`: it was refused memory. */
class Sandbox {
  static #count = 0;

  constructor(sandboxURL, { memoryLimitBytes, blobSource, onCrash, onOutOfMemory }) {
    Sandbox.#count += 1;
    this.number = Sandbox.#count;
    this.worker = startWorker(sandboxURL, `dcp-sandbox-${this.number}`);
    this.interruptBuffer = newInterruptBuffer();
    this.doorbell = newDoorbell();
    this.memoryLimitBytes = memoryLimitBytes;
    this.blobSource = blobSource ?? null; // (sha256) => Promise<Uint8Array>, or null
    this.onOutOfMemory = onOutOfMemory;
    this.outOfMemory = null; // {bytes, limitBytes}: the first growth it was refused
    this.outOfMemoryTimer = null;
    this.jobId = null; // the one job this sandbox serves; null while it is fresh (the reserve)
    this.compiled = false; // the job's work function is compiled here
    this.ready = false; // fresh: connected (and Pyodide loaded, if asked); bound: compiled
    this.hasPyodide = false;
    this.fromSnapshot = false; // Pyodide started from the page's memory snapshot
    this.warming = false; // a warm-up is under way (waiting for the page's snapshot, or loading)
    this.pyodideRequested = false; // a warm or init that loads Pyodide was sent
    this.snapshotDue = false; // this sandbox was asked for the page's snapshot and has not given it
    this.task = null; // the slice running here
    this.lastUsed = 0; // performance.now() when its last slice ended
    this.idleTimer = null;
    this.retiring = false; // terminate once the running slice ends (the pool shrank)
    this.dead = false;
    this.pending = new Map(); // request id -> {message(reply), crash(error)}
    this.nextId = 0;
    // sandbox.js handles work functions' own errors, so an error here means the sandbox died.
    this.worker.addEventListener("error", (event) => {
      onCrash(this, `sandbox ${this.number} failed: ${event.message || "the worker script did not load"}`);
    });
    const channel = new MessageChannel();
    this.port = channel.port1;
    this.port.onmessage = (event) => this.#receive(event.data);
    this.port.onmessageerror = () => onCrash(this, `sandbox ${this.number} sent a message that could not be read`);
    this.#connect(channel.port2);
  }

  /** Hands the sandbox its end of the channel: the one message sent on the worker itself. */
  #connect(port) {
    const id = this.#register({
      message: (reply) => {
        if (this.jobId === null && !this.warming) this.ready = reply.type === "ready";
      },
      crash: () => {},
    });
    const { interruptBuffer, doorbell, memoryLimitBytes } = this;
    const blobsFromPage = this.blobSource !== null;
    this.worker.postMessage({ type: "connect", id, port, interruptBuffer, doorbell, memoryLimitBytes, blobsFromPage }, [port]);
  }

  request(message, handler) {
    const id = this.#register(handler);
    this.port.postMessage({ ...message, id });
    this.#ring(); // after sending: the sandbox wakes to a message already on its way
  }

  /** Wakes the sandbox if it sleeps between requests (sandbox.js, "Between requests"). */
  #ring() {
    if (!this.doorbell) return;
    Atomics.add(this.doorbell, 0, 1);
    Atomics.notify(this.doorbell, 0);
  }

  /** Tells a sleeping sandbox to close itself: terminate() alone leaves a sleeping worker to
   * the browser's forced termination, a couple of seconds later, and its memory with it. */
  #letGo() {
    if (!this.doorbell) return;
    Atomics.store(this.doorbell, 1, 1);
    this.#ring();
  }

  #register(handler) {
    this.nextId += 1;
    this.pending.set(this.nextId, handler);
    return this.nextId;
  }

  interrupt() {
    if (!this.interruptBuffer) return false;
    Atomics.store(this.interruptBuffer, 0, SIGINT);
    return true;
  }

  /** Terminates the worker; every pending request fails with `error`. */
  kill(error) {
    if (this.dead) return;
    this.dead = true;
    clearTimeout(this.idleTimer);
    clearTimeout(this.outOfMemoryTimer);
    this.#letGo();
    this.worker.terminate();
    this.port.close();
    const handlers = [...this.pending.values()];
    this.pending.clear();
    for (const handler of handlers) handler.crash(error);
  }

  #receive(message) {
    if (message?.type === "memory") {
      this.#onMemory(message);
      return;
    }
    if (message?.type === "fetchBlob") {
      this.#answerBlob(message.sha256 ?? null, message.file ?? null);
      return;
    }
    const handler = message && typeof message === "object" ? this.pending.get(message.id) : null;
    if (!handler) return; // a late reply for a request already given up on
    if (FINAL_REPLIES.has(message.type)) this.pending.delete(message.id);
    handler.message(message);
  }

  /** The blob a sandbox asked for, from the pool's blobSource (a copy is posted: the source
   * keeps its bytes for other sandboxes). */
  #answerBlob(sha256, file) {
    const send = (answer) => {
      if (!this.dead) this.port.postMessage({ type: "blob", sha256, file, ...answer });
    };
    Promise.resolve()
      .then(() => this.blobSource(sha256, file))
      .then((bytes) => send({ bytes }), (error) => send({ error: String(error?.message ?? error) }));
  }

  #onMemory({ bytes, limitBytes }) {
    if (this.outOfMemory || this.dead) return;
    this.outOfMemory = { bytes: Number(bytes) || 0, limitBytes: Number(limitBytes) || this.memoryLimitBytes };
    this.onOutOfMemory(this, this.outOfMemory);
  }
}

// ----------------------------------------------------------------------------------- pool

export class SandboxPool {
  #sandboxes = [];
  #queue = []; // tasks waiting for a sandbox
  #size;
  #closed = false;
  #wantsPyodide = false; // a Python job ran here: the reserve loads Pyodide ahead of the next
  #reserveFailures = 0;
  #snapshotKey;
  #snapshotListener = null;

  /**
   * @param {object} options
   * @param {number} [options.size] how many sandboxes may hold jobs at once (default: cores - 1);
   *   one fresh sandbox is kept in reserve beside them
   * @param {string} options.sandboxURL absolute URL of sandbox.js
   * @param {string} options.pyodideURL absolute URL of the vendor/pyodide/ folder
   * @param {number} [options.timeoutMs] default no-progress limit of a slice (0: none)
   * @param {number} [options.initTimeoutMs] limit for loading Pyodide and compiling a job
   * @param {number} [options.interruptGraceMs] how long an interrupted Python slice may take to stop
   * @param {number} [options.idleMs] how long a job's sandbox lives without a slice (0: until needed)
   * @param {number} [options.memoryLimitBytes] how far a sandbox's WebAssembly memory may grow
   * @param {boolean} [options.gpu] whether work functions may use WebGPU (the "Use GPU" switch;
   *   when false a sandbox's navigator.gpu throws "device access is not allowed in a sandbox");
   *   setGpu() changes it for the jobs that start afterwards
   * @param {function} [options.blobSource] (sha256, file) => Promise<Uint8Array>: where
   *   sandboxes get blobs, wheels and (`file`) Pyodide package files (a StoreCache's get);
   *   without it each sandbox fetches them itself
   * @param {object} [options.storedSnapshot] {snapshot: ArrayBuffer, tag}: a Pyodide snapshot kept
   *   from an earlier visit. The reserve starts Pyodide from it at once; a sandbox takes a new
   *   one if it does not restore (its tag is another runtime's, or it fails)
   * @param {function} [options.onSnapshot] ({event, tag, snapshot?}): "made" (a sandbox took a
   *   snapshot: keep it for later visits), "restored" (the stored one restored), "refused" (the
   *   snapshot of `tag` did not restore: forget it)
   */
  constructor({
    size = defaultSize(),
    sandboxURL,
    pyodideURL,
    timeoutMs = DEFAULT_TIMEOUT_MS,
    initTimeoutMs = DEFAULT_INIT_TIMEOUT_MS,
    interruptGraceMs = DEFAULT_INTERRUPT_GRACE_MS,
    idleMs = DEFAULT_IDLE_MS,
    memoryLimitBytes = MAX_SANDBOX_MEMORY_BYTES,
    gpu = true,
    blobSource = null,
    storedSnapshot = null,
    onSnapshot = null,
  }) {
    if (!sandboxURL || !pyodideURL) throw new TypeError("SandboxPool needs sandboxURL and pyodideURL");
    this.sandboxURL = sandboxURL;
    this.pyodideURL = pyodideURL;
    this.timeoutMs = timeoutMs;
    this.initTimeoutMs = initTimeoutMs;
    this.interruptGraceMs = interruptGraceMs;
    this.idleMs = idleMs;
    this.memoryLimitBytes = memoryLimitBytes;
    this.gpu = gpu !== false;
    this.blobSource = blobSource;
    this.#size = Math.max(1, size);
    this.#snapshotKey = `${sandboxURL}\n${pyodideURL}`;
    if (typeof onSnapshot === "function") {
      this.#snapshotListener = (event) => onSnapshot(event);
      snapshots.listen(this.#snapshotKey, this.#snapshotListener);
    }
    if (storedSnapshot && snapshots.seed(this.#snapshotKey, storedSnapshot)) {
      this.#wantsPyodide = true; // the reserve restores it before the first task comes
      this.#keepReserve();
    }
  }

  get size() {
    return this.#size;
  }

  /** What each live sandbox holds, for status displays and tests; `reserve` is the fresh one. */
  stats() {
    return this.#sandboxes.map((sandbox) => ({
      number: sandbox.number,
      jobId: sandbox.jobId,
      reserve: sandbox.jobId === null,
      ready: sandbox.ready,
      hasPyodide: sandbox.hasPyodide,
      fromSnapshot: sandbox.fromSnapshot,
      busy: sandbox.task !== null,
      interruptible: sandbox.interruptBuffer !== null,
    }));
  }

  /** Computes one slice; resolves to {value}, rejects with a SliceError. */
  run(job, slice, datum, { onProgress, onConsole, timeoutMs, uploadTicket } = {}) {
    return new Promise((resolve, reject) => {
      if (!job || job.id === undefined || job.id === null || typeof job.source !== "string") {
        reject(new TypeError("a job needs an id and the work function's source in job.source"));
        return;
      }
      if (this.#closed) {
        reject(new SliceError({ name: "Terminated", message: "the sandbox pool was terminated",
                                jobId: job?.id ?? null, slice }));
        return;
      }
      const task = { job, slice, datum, onProgress, onConsole, timeoutMs, uploadTicket, settled: false };
      task.resolve = (value) => { if (!task.settled) { task.settled = true; resolve(value); } };
      task.reject = (error) => { if (!task.settled) { task.settled = true; reject(error); } };
      if (runtimeOf(job).usesPyodide) this.#wantsPyodide = true;
      this.#queue.push(task);
      this.#dispatch();
    });
  }

  /** Fails every slice of the job, queued or running, and terminates the job's sandboxes. */
  abortJob(jobId, message = `job ${jobId} was aborted`) {
    for (const task of this.#queue.filter((queued) => queued.job.id === jobId)) {
      task.reject(sliceError("Aborted", task, message));
    }
    this.#queue = this.#queue.filter((queued) => queued.job.id !== jobId);
    for (const sandbox of this.#sandboxes.filter((live) => live.jobId === jobId)) {
      this.#discard(sandbox, sandbox.task ? sliceError("Aborted", sandbox.task, message) : null);
    }
    this.#dispatch();
  }

  /** Changes how many sandboxes may hold jobs; busy ones beyond the new size stop after their slice. */
  /** Whether jobs that start from now on may use WebGPU (each job gets a fresh sandbox). */
  setGpu(on) {
    this.gpu = Boolean(on);
  }

  resize(size) {
    this.#size = Math.max(1, size);
    const staying = this.#sandboxes.filter((sandbox) => sandbox.jobId !== null && !sandbox.retiring);
    const excess = staying.length - this.#size;
    const idleFirst = staying.sort((a, b) => Number(a.task !== null) - Number(b.task !== null));
    for (const sandbox of idleFirst.slice(0, Math.max(0, excess))) {
      if (sandbox.task) sandbox.retiring = true;
      else this.#discard(sandbox, null);
    }
    this.#dispatch();
  }

  /** Stops every sandbox; queued and running slices fail with Terminated. */
  terminate() {
    this.#closed = true;
    if (this.#snapshotListener) snapshots.unlisten(this.#snapshotKey, this.#snapshotListener);
    const error = (task) => sliceError("Terminated", task, "the sandbox pool was terminated");
    for (const task of this.#queue) task.reject(error(task));
    this.#queue = [];
    for (const sandbox of [...this.#sandboxes]) {
      this.#discard(sandbox, sandbox.task ? error(sandbox.task) : null);
    }
  }

  // ------------------------------------------------------------------------- dispatch

  #dispatch() {
    if (this.#closed) return;
    this.#runOnOwnSandboxes();
    while (this.#queue.length > 0) {
      const task = this.#queue[0];
      const sandbox = this.#freshSandboxFor(task.job);
      if (!sandbox) break;
      this.#queue.shift();
      this.#runOn(sandbox, task);
    }
    this.#keepReserve();
  }

  /** Queued slices whose job has an idle sandbox go there first, wherever they are queued. */
  #runOnOwnSandboxes() {
    for (const task of [...this.#queue]) {
      const own = this.#sandboxes.find((sandbox) => sandbox.jobId === task.job.id && this.#isIdle(sandbox));
      if (!own) continue;
      this.#queue.splice(this.#queue.indexOf(task), 1);
      this.#runOn(own, task);
    }
  }

  /** A sandbox no job has touched, bound to `job`: the reserve, else a new one. When `size`
   * sandboxes hold jobs, the least recently used idle one (its job has nothing queued) is
   * terminated first; null when every one is busy. */
  #freshSandboxFor(job) {
    if (this.#holdingJobs().length >= this.#size) {
      const idle = this.#holdingJobs().filter((sandbox) => this.#isIdle(sandbox));
      if (idle.length === 0) return null;
      this.#discard(idle.reduce((oldest, sandbox) => (sandbox.lastUsed < oldest.lastUsed ? sandbox : oldest)), null);
    }
    const reserve = this.#reserve();
    // A JS job does not wait for a reserve still loading Pyodide: a bare sandbox starts sooner.
    const skip = reserve?.warming && !runtimeOf(job).usesPyodide;
    const sandbox = reserve && !skip ? reserve : this.#startSandbox();
    sandbox.jobId = job.id;
    sandbox.ready = false;
    return sandbox;
  }

  #holdingJobs() {
    return this.#sandboxes.filter((sandbox) => sandbox.jobId !== null && !sandbox.retiring);
  }

  #isIdle(sandbox) {
    return !sandbox.task && !sandbox.retiring;
  }

  #reserve() {
    return this.#sandboxes.find((sandbox) => sandbox.jobId === null) ?? null;
  }

  /** One fresh sandbox beside the job's ones, with Pyodide loaded once Python jobs run here. */
  #keepReserve() {
    if (this.#closed || this.#reserveFailures >= RESERVE_FAILURES_TOLERATED) return;
    const reserve = this.#reserve() ?? this.#startSandbox();
    if (this.#wantsPyodide && !reserve.warming && !reserve.pyodideRequested) this.#warm(reserve);
  }

  #startSandbox() {
    const sandbox = new Sandbox(this.sandboxURL, {
      memoryLimitBytes: this.memoryLimitBytes,
      blobSource: this.blobSource,
      onCrash: (crashed, message) => this.#lose(crashed, (task) => sliceError("SandboxCrashed", task, message)),
      onOutOfMemory: (full, report) => this.#onOutOfMemory(full, report),
    });
    this.#sandboxes.push(sandbox);
    return sandbox;
  }

  /** A sandbox is lost: its running slice, if any, fails with `errorFor(task)`. */
  #lose(sandbox, errorFor) {
    if (sandbox.dead) return;
    if (sandbox.jobId === null) this.#reserveFailures += 1;
    this.#discard(sandbox, sandbox.task ? errorFor(sandbox.task) : null);
    this.#dispatch();
  }

  /** A sandbox was refused memory. Its slice may still end by itself (with MemoryError, whose
   * traceback says where): #runOn reports it as OutOfMemory then. If it goes on, it is stopped. */
  #onOutOfMemory(sandbox, report) {
    const stop = () => this.#lose(sandbox, (task) => outOfMemoryError(task, report));
    if (sandbox.task) sandbox.outOfMemoryTimer = setTimeout(stop, this.interruptGraceMs);
    else stop();
  }

  /** Terminates and forgets a sandbox; its running slice, if any, fails with `error`. */
  #discard(sandbox, error) {
    this.#sandboxes = this.#sandboxes.filter((live) => live !== sandbox);
    if (sandbox.snapshotDue) {
      sandbox.snapshotDue = false;
      snapshots.release(this.#snapshotKey);
    }
    if (sandbox.task && error) sandbox.task.reject(error);
    sandbox.kill(error ?? new SliceError({ name: "Terminated", message: "sandbox stopped" }));
  }

  /** A job's sandbox that stays idle for idleMs is terminated: its job's slices have stopped. */
  #startIdleClock(sandbox) {
    clearTimeout(sandbox.idleTimer);
    if (sandbox.dead || sandbox.jobId === null || !(this.idleMs > 0)) return;
    sandbox.idleTimer = setTimeout(() => {
      if (sandbox.task || !this.#sandboxes.includes(sandbox)) return;
      this.#discard(sandbox, null);
      this.#dispatch();
    }, this.idleMs);
  }

  // -------------------------------------------------------------------------- Pyodide

  /** Snapshot options for a sandbox about to load Pyodide (see SnapshotStore.claim). */
  #pyodideOptions(sandbox) {
    sandbox.pyodideRequested = true;
    const options = snapshots.claim(this.#snapshotKey);
    sandbox.snapshotDue = Boolean(options.makeSnapshot);
    return options;
  }

  /** Loads Pyodide into the reserve, from the page's snapshot once there is one. */
  async #warm(sandbox) {
    sandbox.warming = true;
    sandbox.ready = false;
    await snapshots.settled(this.#snapshotKey);
    if (sandbox.dead || sandbox.jobId !== null) {
      sandbox.warming = false; // taken by a job meanwhile: its init loads Pyodide
      return;
    }
    const options = this.#pyodideOptions(sandbox);
    sandbox.request({ type: "warm", pyodideURL: this.pyodideURL, ...options }, {
      message: (reply) => {
        this.#onPyodideReply(sandbox, reply, options);
        if (reply.type === "ready") {
          sandbox.warming = false;
          sandbox.ready = sandbox.jobId === null || sandbox.compiled;
          this.#reserveFailures = 0;
        } else if (reply.type === "error") {
          this.#onWarmFailed(sandbox);
        }
      },
      crash: () => {},
    });
  }

  #onWarmFailed(sandbox) {
    sandbox.warming = false;
    sandbox.pyodideRequested = false;
    if (sandbox.jobId !== null) return; // taken by a job meanwhile: its init tries again
    this.#reserveFailures += 1;
    this.#discard(sandbox, null);
    this.#dispatch();
  }

  /** Replies of a warm or init that loads Pyodide: the snapshot, and whether it restored. */
  #onPyodideReply(sandbox, reply, options) {
    if (reply.type === "snapshot" && sandbox.snapshotDue) {
      sandbox.snapshotDue = false;
      snapshots.offer(this.#snapshotKey, reply.snapshot, reply.tag ?? null);
    }
    if (!FINAL_REPLIES.has(reply.type)) return;
    const restored = reply.type === "ready" && Boolean(reply.fromSnapshot);
    if (reply.type === "ready") {
      sandbox.hasPyodide = Boolean(reply.pyodideLoaded);
      sandbox.fromSnapshot = restored;
    }
    if (sandbox.snapshotDue) {
      // Asked for a snapshot and given the stored one to try: it restored, or no snapshot came.
      sandbox.snapshotDue = false;
      if (restored) snapshots.restored(this.#snapshotKey);
      else snapshots.release(this.#snapshotKey);
    } else if (options.snapshot && !options.makeSnapshot && reply.pyodideLoaded && !restored) {
      snapshots.refuse(this.#snapshotKey);
    }
  }

  // --------------------------------------------------------------------------- slices

  async #runOn(sandbox, task) {
    sandbox.task = task;
    clearTimeout(sandbox.idleTimer);
    try {
      if (!sandbox.compiled) await this.#compile(sandbox, task);
      task.resolve(await this.#computeSlice(sandbox, task));
    } catch (error) {
      task.reject(sandbox.outOfMemory ? outOfMemoryError(task, sandbox.outOfMemory, error) : error);
    } finally {
      sandbox.task = null;
      sandbox.lastUsed = performance.now();
      // A sandbox that was refused memory holds all it may: the job's next slice gets a fresh one.
      if (sandbox.retiring || sandbox.outOfMemory) this.#discard(sandbox, null);
      else this.#startIdleClock(sandbox);
      this.#dispatch();
    }
  }

  #compile(sandbox, task) {
    const { id, language = "python", source, args = [], packages = [], pyodide = [], fs = null } = task.job;
    // Unless a warm-up already asked for it, a Python job's init loads Pyodide (from the snapshot).
    const options = runtimeOf(task.job).usesPyodide && !sandbox.pyodideRequested
      ? this.#pyodideOptions(sandbox) : {};
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#discard(sandbox, sliceError("InitTimeout", task,
          `loading the work function of job ${task.job.id} took over ${this.initTimeoutMs} ms`));
      }, this.initTimeoutMs);
      const settle = (outcome) => {
        clearTimeout(timer);
        outcome();
      };
      const replies = new Map([
        // Output of the work function's module-level code belongs to no slice.
        ["console", (reply) => forwardConsole(task, { ...reply, slice: null })],
        ["snapshot", () => {}],
        ["ready", () => settle(() => {
          sandbox.compiled = true;
          sandbox.ready = true;
          this.#reserveFailures = 0;
          resolve();
        })],
        ["error", (reply) => settle(() => {
          // The sandbox stays bound to the job (its code may have run): a later slice retries.
          if (reply.fatal) this.#discard(sandbox, null);
          reject(new SliceError({ ...reply, jobId: task.job.id, slice: task.slice }));
        })],
      ]);
      sandbox.request(
        { type: "init", job: { id, language, source, args, packages, pyodide, fs }, pyodideURL: this.pyodideURL, gpu: this.gpu, ...options },
        {
          message: (reply) => {
            this.#onPyodideReply(sandbox, reply, options);
            (replies.get(reply.type) ?? replies.get("error"))(reply);
          },
          crash: (error) => settle(() => reject(error)),
        },
      );
    });
  }

  #computeSlice(sandbox, task) {
    const timeoutMs = task.timeoutMs ?? this.timeoutMs;
    const noProgress = () => sliceError("NoProgress", task,
      `slice ${task.slice} of job ${task.job.id} reported no progress for ${timeoutMs} ms`);
    return new Promise((resolve, reject) => {
      const silence = this.#silenceTimer(sandbox, task, timeoutMs, noProgress);
      const settle = (outcome) => {
        silence.stop();
        outcome();
      };
      const replies = new Map([
        ["progress", (reply) => {
          silence.restart();
          callQuietly(task.onProgress, reply.value);
        }],
        ["console", (reply) => forwardConsole(task, reply)],
        ["result", (reply) => settle(() => {
          if (silence.interrupted) reject(noProgress());
          else resolve({ value: reply.value, gpuMs: reply.gpuMs });
        })],
        ["error", (reply) => settle(() => {
          if (reply.fatal) this.#discard(sandbox, null);
          reject(silence.interrupted ? noProgress() : new SliceError({ ...reply, jobId: task.job.id }));
        })],
      ]);
      silence.restart();
      const upload = task.uploadTicket ? { ticket: task.uploadTicket, limitBytes: RESULT_INLINE_LIMIT_BYTES } : undefined;
      sandbox.request({ type: "slice", slice: task.slice, datum: task.datum, upload }, {
        message: (reply) => replies.get(reply.type)?.(reply),
        crash: (error) => settle(() => reject(error)),
      });
    });
  }

  /** The no-progress deadline of a running slice. When it passes, a Python slice is
   * interrupted and keeps its sandbox warm (given interruptGraceMs to stop); any other is
   * failed with `noProgress()` and loses its sandbox. */
  #silenceTimer(sandbox, task, timeoutMs, noProgress) {
    const discard = () => this.#discard(sandbox, noProgress());
    const silence = new SilenceTimer(timeoutMs, () => {
      if (runtimeOf(task.job).interruptible && sandbox.interrupt()) silence.interrupt(this.interruptGraceMs, discard);
      else discard();
    });
    return silence;
  }
}

/** Passes a console line of a sandbox on to the slice's onConsole. */
function forwardConsole(task, { level, message, slice }) {
  callQuietly(task.onConsole, { level, message, slice });
}

/** A deadline that progress reports push back, until it is interrupted or stopped. */
class SilenceTimer {
  #ms;
  #onSilence;
  #timer = null;
  interrupted = false;

  constructor(ms, onSilence) {
    this.#ms = ms;
    this.#onSilence = onSilence;
  }

  /** Starts the deadline again (not once the slice was interrupted). */
  restart() {
    if (this.interrupted) return;
    clearTimeout(this.#timer);
    if (this.#ms > 0 && Number.isFinite(this.#ms)) this.#timer = setTimeout(this.#onSilence, this.#ms);
  }

  /** Marks the slice interrupted; `onOverrun` runs unless it ends within `graceMs`. */
  interrupt(graceMs, onOverrun) {
    this.interrupted = true;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(onOverrun, graceMs);
  }

  stop() {
    clearTimeout(this.#timer);
  }
}
