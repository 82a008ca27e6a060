/*
 * The sandboxes' own frame: a SandboxPool in a page of its own process, driven by the Worker
 * tab through a MessageChannel (isolated-pool.js is the tab's side).
 *
 * The tab loads sandbox-host.html in an <iframe sandbox="allow-scripts">: an opaque origin,
 * which Chromium puts in a renderer process of its own. Chromium ends a whole renderer when one
 * of its workers passes its JavaScript heap limit, and nothing can see a busy worker's heap, so
 * a work function that allocates without end takes down this frame's process, not the tab. The
 * tab notices that this frame stopped answering, fails the slices it held, and loads a fresh one.
 *
 * Protocol. This frame says {type: "hello"} to its parent once loaded; the parent answers with
 * {type: "connect", port, options} (port transferred, options as SandboxPool takes them, with
 * `storedSnapshot` {snapshot, tag} the Pyodide snapshot the tab kept, snapshot transferred).
 * Every later message travels over that port:
 *
 *   tab -> frame
 *     {type: "run", id, job, slice, datum, timeoutMs?, uploadTicket?}   SandboxPool.run
 *     {type: "abortJob", jobId, message}                     SandboxPool.abortJob
 *     {type: "resize", size}                                 SandboxPool.resize
 *     {type: "terminate"}                                    SandboxPool.terminate
 *     {type: "ping", id}                                     answered at once with pong
 *     {type: "blob", ask, bytes?, error?}                    the answer to fetchBlob `ask`
 *
 *   frame -> tab
 *     {type: "progress", id, value}  {type: "console", id, line}     of run `id`
 *     {type: "done", id, value, gpuMs, stats}  {type: "failed", id, error: {name, message, traceback}, stats}
 *     {type: "pong", id, stats}                              stats: SandboxPool.stats()
 *     {type: "stats", stats}                                 after an abortJob or resize
 *     {type: "fetchBlob", ask, sha256, file?}                a sandbox wants a blob (options.blobsFromTab)
 *     {type: "snapshot", event, tag, snapshot?}              SandboxPool's onSnapshot: "made" (with
 *                                                            the snapshot, a copy: keep it),
 *                                                            "restored", "refused" (forget `tag`)
 *
 * With `blobsFromTab` in the connect's options, the pool's sandboxes get blobs and wheels from
 * the tab (its StoreCache, which the browser's HTTP cache backs: this frame's opaque origin has
 * none) instead of fetching them each.
 *
 * This frame's event loop does nothing but pass messages (slices run in the pool's workers), so
 * a ping goes unanswered only when the process is gone.
 */

import { SandboxPool } from "./sandbox-pool.js";

let pool = null;
let port = null;
const asked = new Map(); // ask number -> {resolve, reject} of a fetchBlob not answered yet
let lastAsk = 0;

function send(message) {
  port.postMessage(message);
}

async function run({ id, job, slice, datum, timeoutMs, uploadTicket }) {
  try {
    const { value, gpuMs } = await pool.run(job, slice, datum, {
      timeoutMs,
      uploadTicket,
      onProgress: (value) => send({ type: "progress", id, value }),
      onConsole: (line) => send({ type: "console", id, line }),
    });
    send({ type: "done", id, value, gpuMs, stats: pool.stats() });
  } catch (error) {
    const { name = "Error", message = String(error), traceback = "" } = error ?? {};
    send({ type: "failed", id, error: { name, message, traceback }, stats: pool.stats() });
  }
}

/** A blob's bytes from the tab: the pool's blobSource when the tab offers one. */
function askTab(sha256, file) {
  return new Promise((resolve, reject) => {
    lastAsk += 1;
    asked.set(lastAsk, { resolve, reject });
    send({ type: "fetchBlob", ask: lastAsk, sha256, file });
  });
}

function answer({ ask, bytes, error }) {
  const waiting = asked.get(ask);
  if (!waiting) return;
  asked.delete(ask);
  if (bytes instanceof Uint8Array) waiting.resolve(bytes);
  else waiting.reject(new Error(String(error ?? "the tab sent no bytes")));
}

const HANDLERS = Object.freeze({
  blob: answer,
  run,
  abortJob: ({ jobId, message }) => {
    pool.abortJob(jobId, message);
    send({ type: "stats", stats: pool.stats() });
  },
  resize: ({ size }) => {
    pool.resize(size);
    send({ type: "stats", stats: pool.stats() });
  },
  terminate: () => pool.terminate(),
  ping: ({ id }) => send({ type: "pong", id, stats: pool.stats() }),
  gpu: ({ on }) => pool.setGpu(on),
});

function connect(event) {
  if (event.source !== parent || event.data?.type !== "connect" || !(event.data.port instanceof MessagePort)) return;
  window.removeEventListener("message", connect);
  const { blobsFromTab = false, ...options } = event.data.options ?? {};
  port = event.data.port;
  const onSnapshot = ({ event: what, tag, snapshot }) => send({ type: "snapshot", event: what, tag, snapshot });
  pool = new SandboxPool({ ...options, blobSource: blobsFromTab ? askTab : null, onSnapshot });
  port.onmessage = ({ data }) => {
    if (Object.hasOwn(HANDLERS, data?.type)) HANDLERS[data.type](data);
  };
}

window.addEventListener("message", connect);
parent.postMessage({ type: "hello" }, "*");
