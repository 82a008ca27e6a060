/*
 * DCP sandbox: a module Web Worker that computes the slices of one job at a time.
 *
 *   new Worker(sandboxURL, { type: "module" })   // see sandbox-pool.js for the page side
 *
 * Protocol (postMessage objects; every request has an `id` and every reply echoes it):
 *
 *   page -> sandbox
 *     {type: "init", id, job: {id, language: "python"|"js", source, args}, pyodideURL,
 *      interruptBuffer?}
 *         Compiles the work function of `job` (once per job; slices reuse it). Python jobs load
 *         Pyodide from `pyodideURL` (the absolute URL of the vendor/pyodide/ folder) the first
 *         time; it then stays loaded for every later job. JS jobs never load Pyodide.
 *         `interruptBuffer` (a SharedArrayBuffer-backed Uint8Array or Int32Array, optional)
 *         becomes Pyodide's interrupt buffer: the page writes 2 (SIGINT) to raise
 *         KeyboardInterrupt in a running Python slice.
 *     {type: "slice", id, slice, datum}
 *         Calls work(datum, *job.args).
 *
 *   sandbox -> page
 *     {type: "ready", id, jobId, pyodideLoaded}                  init succeeded
 *     {type: "progress", id, slice, value}                 value: 0..1, or null (unknown)
 *     {type: "console", id, slice, level: "log"|"error", message}
 *                                                                slice is null during init
 *     {type: "result", id, slice, value}                   the slice's JSON-able result
 *     {type: "error", id, slice?, name, message, traceback, fatal?}
 *         The work function failed (Python: exception class name and formatted traceback;
 *         JS: error.name and error.stack), its result was not JSON-serialisable, it reported an
 *         invalid progress value, or init failed. `fatal: true` means the sandbox is unusable and
 *         should be terminated.
 *
 * Work functions. The rules live in the shared runtimes, not here: Python work functions run in
 * dcp/runtime/slice.py (the same file local_exec runs under CPython), JavaScript ones through
 * dcp/runtime/slice.mjs (the same module local_exec runs under node). In short: the source is
 * compiled once per job; the work function is `work` (else the last top-level def in Python, or
 * a function expression in JS); `progress(value)` is a global (and `from dcp import progress` in
 * Python) taking 0..1, "50%" or nothing, and an invalid value fails the slice even if caught;
 * print()/console lines are forwarded; a result must be JSON.
 *
 * Runtime files. The portal serves them beside this script at /worker/runtime/ (see
 * dcp/runtime/runtimes.py): slice.mjs, imported below, and slice.py, fetched when Pyodide
 * first loads, written into Pyodide's file system and imported as the module `dcp_slice`. The
 * portal also generates /worker/runtime/manifest.mjs, `export default {"slice.py":
 * "sha256-...", ...}`, from the files it serves; slice.py is fetched with that hash as its
 * Subresource Integrity, so a sandbox never runs a runtime other than the one the portal
 * describes (a stale cache or a half-finished deploy fails the init instead). The init message
 * stays as above: everything is found relative to this script's own URL.
 *
 * Security. Before any work function runs, every network and storage entry point of the worker
 * scope (fetch, XMLHttpRequest, WebSocket, EventSource, WebTransport, importScripts, nested
 * workers, BroadcastChannel, indexedDB, caches, postMessage to the page) is replaced by a stub
 * that throws "network access is not allowed in a sandbox"; that includes Python's `js.fetch`
 * and `pyodide.http`. The real fetch is kept privately and used only to load Pyodide's own
 * files and the runtime's slice.py. As the second layer the portal serves this file with a
 * Content-Security-Policy that limits script and connect sources to the Pyodide vendor folder
 * and the runtime folder. The exact header (portal/web/worker_files.py, which the tests use
 * too), with ORIGIN the portal origin (a CSP path needs a host, so the server writes in its own):
 *
 *   Content-Security-Policy: default-src 'none';
 *       script-src ORIGIN/worker/vendor/pyodide/ ORIGIN/worker/runtime/ 'wasm-unsafe-eval'
 *       'unsafe-eval'; connect-src ORIGIN/worker/vendor/pyodide/ ORIGIN/worker/runtime/slice.py
 *
 * script-src admits the import() of pyodide.mjs and pyodide.asm.mjs and the imports of
 * runtime/slice.mjs and runtime/manifest.mjs; connect-src the fetches of the wasm, the standard
 * library zip, the lock file and slice.py; 'wasm-unsafe-eval' lets Pyodide compile its wasm
 * (enough for Python jobs); 'unsafe-eval' is needed only to compile JS work functions (new
 * Function). default-src 'none' also forbids nested workers and every other load, and import()
 * of any other URL (blob: and data: included) is refused.
 *
 * Known limit: a sandbox stays warm across jobs, so code of one job can leave state (Python
 * modules, JS globals) that a later job in the same sandbox sees.
 */

import {
  clipConsoleLine, compileWorkFunction, consoleFor, describe, errorReply, progressFunction, runSlice,
} from "./runtime/slice.mjs";
import RUNTIME_INTEGRITY from "./runtime/manifest.mjs";

const NETWORK_BLOCKED_MESSAGE = "network access is not allowed in a sandbox";
const PROGRESS_BURST = 20; // progress messages sent at once before throttling starts
const PROGRESS_INTERVAL_MS = 50; // then at most one progress message per interval
const MAX_CONSOLE_MESSAGES = 1000; // per slice (or per init)
const PYODIDE_FETCHED_FILES = ["pyodide.asm.wasm", "python_stdlib.zip", "pyodide-lock.json"];
const RUNTIME_URL = new URL("./runtime/", import.meta.url); // where the portal serves them
const PYTHON_RUNTIME_FILE = "slice.py";
const PYTHON_RUNTIME_MODULE = "dcp_slice"; // its name inside Pyodide
const PYTHON_RUNTIME_DIR = "/dcp_runtime"; // in Pyodide's file system, on sys.path

// Captured before lockdown: only this module can reach them, work functions cannot.
const realFetch = globalThis.fetch.bind(globalThis);
const postToPage = globalThis.postMessage.bind(globalThis);
const { parse: parseJson, stringify: stringifyJson } = JSON;
// The page's own console methods, kept before `console` is pointed at the slice's output.
const realConsole = { log: console.log.bind(console), error: console.error.bind(console) };

// ---------------------------------------------------------------------------------- lockdown

class SandboxNetworkError extends Error {
  constructor() {
    super(NETWORK_BLOCKED_MESSAGE);
    this.name = "SandboxNetworkError";
  }
}

function blockedFunction(name) {
  // A plain function, so `new WebSocket(...)` and `fetch(...)` both throw the same clear error.
  const blocked = function () {
    throw new SandboxNetworkError();
  };
  Object.defineProperty(blocked, "name", { value: name });
  return blocked;
}

/** Removes `name` from the global object and its prototypes, then pins `descriptor` there. */
function replaceGlobal(name, descriptor) {
  for (let scope = globalThis; scope; scope = Object.getPrototypeOf(scope)) {
    if (Object.prototype.hasOwnProperty.call(scope, name)) delete scope[name];
  }
  Object.defineProperty(globalThis, name, { ...descriptor, configurable: false, enumerable: false });
}

let pyodideLoading = null; // {indexURL} while loadPyodide() runs, else null

/** The only fetch the worker scope has: Pyodide's own files while it loads, nothing else. */
function guardedFetch(resource, options) {
  const url = new URL(resource instanceof Request ? resource.url : String(resource), location.href);
  const allowed =
    pyodideLoading &&
    PYODIDE_FETCHED_FILES.some((name) => url.href === new URL(name, pyodideLoading.indexURL).href);
  if (!allowed) throw new SandboxNetworkError();
  return realFetch(resource, options);
}

function lockDownGlobals() {
  const functions = [
    "XMLHttpRequest", "WebSocket", "WebSocketStream", "EventSource", "WebTransport",
    "importScripts", "Worker", "SharedWorker", "BroadcastChannel", "postMessage", "fetchLater",
  ];
  for (const name of functions) replaceGlobal(name, { value: blockedFunction(name), writable: false });
  replaceGlobal("fetch", { value: guardedFetch, writable: false });
  for (const name of ["indexedDB", "caches"]) {
    replaceGlobal(name, { get: blockedFunction(name) });
  }
}

lockDownGlobals();

// ---------------------------------------------------------------------------- reporting

let activeRequest = null; // the init or slice being handled: {id, slice, ...counters}

function newRequestState(id, slice) {
  return {
    id,
    slice,
    consoleCount: 0,
    progressTokens: PROGRESS_BURST,
    progressCheckedAt: performance.now(),
    pendingProgress: undefined, // {value} held back by the throttle
    progressProblem: null, // the first invalid progress() of a JS work function
  };
}

function post(message) {
  postToPage(message);
}

function sendConsole(level, message) {
  const state = activeRequest;
  if (!state) {
    realConsole[level === "error" ? "error" : "log"](message);
    return;
  }
  state.consoleCount += 1;
  if (state.consoleCount > MAX_CONSOLE_MESSAGES) {
    if (state.consoleCount === MAX_CONSOLE_MESSAGES + 1) {
      post({ type: "console", id: state.id, slice: state.slice, level: "error",
             message: `console output truncated after ${MAX_CONSOLE_MESSAGES} messages` });
    }
    return;
  }
  const clipped = clipConsoleLine(String(message));
  post({ type: "console", id: state.id, slice: state.slice, level, message: clipped });
}

Object.assign(console, consoleFor(sendConsole));

// Errors thrown by work functions outside the slice's own call (timers, stray promises) must not
// reach the page as worker errors: the pool reads those as "the sandbox script failed to load".
self.addEventListener("error", (event) => {
  event.preventDefault();
  sendConsole("error", `uncaught ${describe(event.error ?? event.message)}`);
});
self.addEventListener("unhandledrejection", (event) => {
  event.preventDefault();
  sendConsole("error", `unhandled rejection: ${describe(event.reason)}`);
});

// ------------------------------------------------------------------------------ progress

function sendProgress(state, value) {
  post({ type: "progress", id: state.id, slice: state.slice, value });
}

/** A valid progress() value of the running slice, throttled: a token bucket lets short bursts
 * through at once and thins a flood to one message per interval, keeping the last value. */
function recordProgress(state, value) {
  const now = performance.now();
  state.progressTokens = Math.min(
    PROGRESS_BURST, state.progressTokens + (now - state.progressCheckedAt) / PROGRESS_INTERVAL_MS);
  state.progressCheckedAt = now;
  if (state.progressTokens >= 1) {
    state.progressTokens -= 1;
    state.pendingProgress = undefined;
    sendProgress(state, value);
  } else {
    state.pendingProgress = { value };
  }
}

function runningSlice() {
  return activeRequest && activeRequest.slice !== null ? activeRequest : null;
}

replaceGlobal("progress", { value: progressFunction(runningSlice, recordProgress), writable: false });

// ---------------------------------------------------------------------------- JavaScript

function startJsJob(job) {
  // new Function bodies run in the global scope: work code cannot see this module's variables.
  const work = compileWorkFunction(job.source, (body) => new Function(body)());
  const args = job.args ?? [];
  return {
    run: (slice, datum) => runSlice(work, args, slice, datum, activeRequest),
    dispose() {},
  };
}

// ------------------------------------------------------------------------------- Python

let pyodidePromise = null; // resolves to {pyodide, SliceRuntime}
let interruptBuffer = null;

// What the Python runtime (slice.py) reports through: progress is already checked there.
const pythonHost = {
  report_progress: (value) => {
    const state = runningSlice();
    if (state) recordProgress(state, value ?? null);
  },
  console: (level, message) => sendConsole(level, message),
};

function loadPyodideOnce(pyodideURL) {
  pyodidePromise ??= loadPythonRuntime(pyodideURL).catch((error) => {
    pyodidePromise = null; // a later init may retry
    throw error;
  });
  return pyodidePromise;
}

async function startPyodide(indexURL) {
  pyodideLoading = { indexURL };
  try {
    const { loadPyodide } = await import(new URL("pyodide.mjs", indexURL).href);
    return await loadPyodide({ indexURL, checkAPIVersion: true });
  } finally {
    pyodideLoading = null;
  }
}

/** A runtime file from the portal, checked against the manifest's SHA-256. */
async function fetchRuntimeFile(name) {
  const integrity = RUNTIME_INTEGRITY[name];
  if (!integrity) throw new Error(`the runtime manifest lists no ${name}`);
  let response;
  try {
    response = await realFetch(new URL(name, RUNTIME_URL).href, { integrity, cache: "no-cache" });
  } catch (error) {
    throw new Error(`the runtime file ${name} could not be loaded or failed its integrity check: ${error.message}`);
  }
  if (!response.ok) throw new Error(`the runtime file ${name} could not be loaded: HTTP ${response.status}`);
  return response.text();
}

async function loadPythonRuntime(pyodideURL) {
  const indexURL = new URL(pyodideURL.endsWith("/") ? pyodideURL : `${pyodideURL}/`, location.href).href;
  const [pyodide, source] = await Promise.all([startPyodide(indexURL), fetchRuntimeFile(PYTHON_RUNTIME_FILE)]);
  pyodide.setStdout({ batched: (line) => sendConsole("log", line) });
  pyodide.setStderr({ batched: (line) => sendConsole("error", line) });
  pyodide.setStdin({ error: true });
  if (interruptBuffer) pyodide.setInterruptBuffer(interruptBuffer);
  pyodide.FS.mkdirTree(PYTHON_RUNTIME_DIR);
  pyodide.FS.writeFile(`${PYTHON_RUNTIME_DIR}/${PYTHON_RUNTIME_MODULE}.py`, source);
  const sys = pyodide.pyimport("sys");
  const path = sys.path;
  try {
    path.append(PYTHON_RUNTIME_DIR);
  } finally {
    path.destroy();
    sys.destroy();
  }
  // The module stays for the sandbox's lifetime: SliceRuntime is an attribute borrowed from it.
  const module = pyodide.pyimport(PYTHON_RUNTIME_MODULE);
  return { pyodide, SliceRuntime: module.SliceRuntime };
}

/** Reply for a JS-level failure of the Python runtime itself: the sandbox is then unusable. */
function fatalPythonReply(error) {
  return { ...errorReply(error), name: error?.type ?? error?.name ?? "Error", fatal: true };
}

async function startPythonJob(job, { pyodideURL }) {
  const { SliceRuntime } = await loadPyodideOnce(pyodideURL);
  const runtime = SliceRuntime.from_json(job.source, encodeJson(job.args ?? [], "the job's arguments"), pythonHost);
  const compile = runtime.compile_json;
  const run = runtime.run_json;
  const dispose = () => [compile, run, runtime].forEach(destroyProxy);
  const failure = compile();
  if (typeof failure === "string") {
    dispose();
    const { name, message, traceback } = parseJson(failure); // the source did not compile or run
    throw Object.assign(new Error(message), { name, traceback });
  }
  return { run: (slice, datum) => runPythonSlice(run, slice, datum), dispose };
}

async function runPythonSlice(run, slice, datum) {
  let reply;
  try {
    reply = run(slice, encodeJson(datum, `the datum of slice ${slice}`));
    if (typeof reply !== "string") {
      const awaitable = reply; // a PyProxy of the runtime's coroutine
      try {
        reply = await awaitable;
      } finally {
        destroyProxy(awaitable);
      }
    }
  } catch (error) {
    // run_json() catches every Python exception, so this is the runtime itself failing.
    return fatalPythonReply(error);
  }
  return parseJson(reply);
}

function destroyProxy(proxy) {
  try {
    proxy?.destroy?.();
  } catch {
    // already destroyed
  }
}

function encodeJson(value, what) {
  let encoded;
  try {
    encoded = stringifyJson(value === undefined ? null : value);
  } catch (error) {
    throw new TypeError(`${what} is not JSON-serialisable: ${error.message}`);
  }
  if (encoded === undefined) throw new TypeError(`${what} is not JSON-serialisable`);
  return encoded;
}

// ------------------------------------------------------------------------------ runtimes

// Work-function runtimes by language: start(job, init) compiles the job's work function and
// resolves to {run(slice, datum) -> reply, dispose()}. Adding a language adds a row.
const RUNTIMES = Object.freeze({
  python: { start: startPythonJob },
  js: { start: startJsJob },
});

// ------------------------------------------------------------------------------ requests

let currentJob = null; // {id, run(slice, datum) -> reply, dispose()}

function runtimeOf(job) {
  if (!job || typeof job !== "object") throw new TypeError("init needs a job object");
  if (typeof job.source !== "string") throw new TypeError("job.source must be source text");
  if (job.args !== undefined && !Array.isArray(job.args)) throw new TypeError("job.args must be a list");
  const language = job.language ?? "python";
  if (!Object.hasOwn(RUNTIMES, language)) {
    const known = Object.keys(RUNTIMES).map((name) => `"${name}"`).join(" or ");
    throw new TypeError(`job.language must be ${known}, not ${stringifyJson(job.language)}`);
  }
  return RUNTIMES[language];
}

async function handleInit(init) {
  const { id, job, interruptBuffer: buffer } = init;
  activeRequest = newRequestState(id, null);
  try {
    const runtime = runtimeOf(job);
    if (buffer && buffer !== interruptBuffer) {
      interruptBuffer = buffer;
      if (pyodidePromise) (await pyodidePromise).pyodide.setInterruptBuffer(buffer);
    }
    currentJob?.dispose();
    currentJob = null;
    currentJob = { id: job.id, ...(await runtime.start(job, init)) };
    post({ type: "ready", id, jobId: job.id, pyodideLoaded: pyodidePromise !== null });
  } catch (error) {
    post({ type: "error", id, ...describeInitError(error) });
  } finally {
    activeRequest = null;
  }
}

function describeInitError(error) {
  return {
    name: String(error?.name ?? "Error"),
    message: String(error?.message ?? error),
    traceback: String(error?.traceback ?? error?.stack ?? ""),
  };
}

async function handleSlice({ id, slice, datum }) {
  if (!currentJob) {
    post({ type: "error", id, slice, name: "ProtocolError",
           message: "no work function compiled: send init first", traceback: "" });
    return;
  }
  const state = newRequestState(id, slice);
  activeRequest = state;
  if (interruptBuffer) Atomics.store(interruptBuffer, 0, 0); // forget a late interrupt
  let reply;
  try {
    reply = await currentJob.run(slice, datum);
  } catch (error) {
    reply = errorReply(error);
  } finally {
    activeRequest = null;
  }
  if (state.pendingProgress) sendProgress(state, state.pendingProgress.value);
  if (reply.type === "result") {
    post({ type: "result", id, slice, value: reply.value });
  } else {
    const { type: _type, ...error } = reply;
    post({ type: "error", id, slice, ...error });
  }
}

const HANDLERS = { init: handleInit, slice: handleSlice };

async function handle(message) {
  const handler = Object.hasOwn(HANDLERS, message?.type) ? HANDLERS[message.type] : null;
  if (handler) return handler(message);
  post({ type: "error", id: message?.id ?? null, name: "ProtocolError",
         message: `unknown message type ${stringifyJson(message?.type)}`, traceback: "" });
}

// One request at a time, in arrival order: a slice never overlaps the init before it.
let queue = Promise.resolve();
self.addEventListener("message", (event) => {
  queue = queue.then(() => handle(event.data)).catch((error) => {
    realConsole.error("sandbox internal error", error);
  });
});
