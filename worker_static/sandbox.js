/*
 * DCP sandbox: a module Web Worker that computes the slices of one job, and of no other job.
 *
 *   new Worker(sandboxURL, { type: "module" })   // see sandbox-pool.js for the page side
 *
 * Lifecycle. A sandbox starts fresh: it may load Pyodide and the Python runtime ("warm"), but
 * runs nothing of any job. The first init binds it to that job for the rest of its life: it
 * keeps the job's work function compiled across the job's slices, refuses an init for any other
 * job, and is terminated (worker.terminate()) when the pool no longer needs it for this job. So
 * nothing a work function leaves behind (patched builtins or globals, modules, files, timers,
 * event listeners) is ever seen by another job: the next job gets another fresh sandbox. The pool
 * keeps one fresh sandbox warm in reserve, so a job switch does not wait for Pyodide.
 *
 * Protocol. The page's first message, posted on the worker itself, hands the sandbox a private
 * MessagePort (of a MessageChannel):
 *
 *   {type: "connect", id, port, interruptBuffer?, doorbell?, memoryLimitBytes?, blobsFromPage?}  (port transferred)
 *
 * The sandbox stops listening on its global scope after it, and every later message in both
 * directions travels over that port, which no work function can reach: a work function's own
 * `self.addEventListener("message", ...)` hears nothing, and `postMessage` is a stub that throws.
 * `interruptBuffer` (a SharedArrayBuffer-backed Uint8Array or Int32Array, optional) becomes
 * Pyodide's interrupt buffer: the page writes 2 (SIGINT) to raise KeyboardInterrupt in a running
 * Python slice. `doorbell` (an Int32Array of two elements on a SharedArrayBuffer, optional):
 * the page rings it after each request it sends (Atomics.add(doorbell, 0, 1), then
 * Atomics.notify(doorbell, 0)), and sets doorbell[1] to 1 and rings when it lets the sandbox go;
 * see "Between requests". `memoryLimitBytes` is how far any WebAssembly memory of the sandbox may
 * grow (see "Memory"). Over the port every request has an `id` and every reply echoes it:
 *
 *   page -> sandbox
 *     {type: "warm", id, pyodideURL, snapshot?, snapshotTag?, makeSnapshot?}
 *         Loads Pyodide from `pyodideURL` (the absolute URL of the vendor/pyodide/ folder) and the
 *         Python runtime, and nothing of any job. `snapshot` (an ArrayBuffer) is a Pyodide memory
 *         snapshot to start from instead of booting Python, unless its `snapshotTag` is not this
 *         sandbox's; `makeSnapshot: true` asks for one, taken right after the runtime loaded,
 *         when Pyodide did not start from `snapshot` (see "Snapshots" below).
 *     {type: "init", id, job: {id, language: "python"|"js", source, args, packages?, pyodide?},
 *      pyodideURL, gpu?, snapshot?, snapshotTag?, makeSnapshot?}
 *         Binds the sandbox to `job` (an init for another job is refused, fatally) and compiles
 *         its work function (again only after a failed init of the same job; slices reuse it).
 *         Python jobs load Pyodide first unless a warm did; JS jobs never load Pyodide. A
 *         Python job's `pyodide` (names) and `packages` (wheels in the store) are installed
 *         once, before its code runs (see "Packages" below).
 *         `gpu: false` (the first init decides) takes WebGPU away: navigator.gpu then throws
 *         "device access is not allowed in a sandbox", and dcp.gpu / the `gpu` global find none.
 *     {type: "slice", id, slice, datum, upload?: {ticket, limitBytes}}
 *         Calls work(datum, *job.args); a result's reply carries `gpuMs` when it used the GPU.
 *         With `upload` (the worker's upload ticket for this job, see "Blobs"), a result whose
 *         JSON is over `limitBytes` has its large bytes stored in the portal's store first.
 *     {type: "blob", sha256, bytes?, error?}     the answer to fetchBlob (no id; see "Blobs")
 *
 *   sandbox -> page
 *     {type: "fetchBlob", sha256, file?}                   asks for a blob's bytes (blobsFromPage);
 *                                                          `file`: a Pyodide package's file instead
 *     {type: "ready", id, jobId, pyodideLoaded, fromSnapshot}    connect, warm or init succeeded
 *                                                                (jobId null for connect, warm)
 *     {type: "snapshot", id, snapshot, tag, problem}       the memory snapshot a warm or init
 *                                                          asked for (ArrayBuffer, transferred),
 *                                                          or null and why not; `tag`: its tag
 *     {type: "progress", id, slice, value}                 value: 0..1, or null (unknown)
 *     {type: "console", id, slice, level: "log"|"error", message}
 *                                                                slice is null during init
 *     {type: "result", id, slice, value, gpuMs?}                   the slice's JSON-able result
 *     {type: "error", id, slice?, name, message, traceback, fatal?}
 *         The work function failed (Python: exception class name and formatted traceback;
 *         JS: error.name and error.stack), its result was not JSON-serialisable, it reported an
 *         invalid progress value, or warm/init failed. `fatal: true` means the sandbox is
 *         unusable and should be terminated.
 *     {type: "memory", bytes, limitBytes}                  (no id: it answers no request)
 *         A WebAssembly memory asked to grow to `bytes`, past `limitBytes`, and was refused.
 *
 * Memory. Before any code runs, WebAssembly.Memory.prototype.grow is replaced by one that
 * refuses to grow a memory past `memoryLimitBytes` (it throws a RangeError) and tells the page
 * at once, whatever the slice is doing: emscripten, hence Pyodide, grows its memory from JS, so a
 * Python work function that allocates without end gets MemoryError, and the page stops the
 * sandbox (sandbox-pool.js) even if that MemoryError is caught. A Python job's whole heap is
 * that memory. The JavaScript heap of a JS work function is not bounded here: no browser lets a
 * worker, or its page, see how much a busy worker holds (see docs/architecture.md).
 *
 * Between requests. Once a job's code has run here, the sandbox blocks its thread
 * (Atomics.wait on the doorbell) whenever it has no request to handle, until the page rings for
 * the next one. So nothing a job leaves behind (timers, intervals, message handlers, a promise
 * chain) runs while none of its slices does: a busy loop armed by a job's last slice costs no
 * other job any CPU. When the page lets the sandbox go, the sandbox closes itself (self.close(),
 * which drops every task still queued) instead of waking the job's leftovers, so its memory is
 * given back at once. Without a doorbell (a page that is not cross-origin isolated) the sandbox
 * stays awake between requests.
 *
 * Blobs. Values travel in the value encoding (dcp/runtime/values.mjs, the twin of
 * dcp/protocol/values.py): a blob reference {"$blob": "<sha256>", "size": n} in the job's
 * arguments (before the init compiles) or in a slice's datum (before the slice runs), and each
 * of a job's wheels, is asked of the page when connect said `blobsFromPage` ({type:
 * "fetchBlob", sha256} on the port, answered by {type: "blob", sha256, bytes | error} outside
 * the inbox: the page keeps one copy for every sandbox and job, store-cache.js), else fetched from
 * the portal's store, ORIGIN/store/<sha256>, with the private real fetch (the browser's HTTP
 * cache keeps nothing for a frame of an opaque origin); either way it is checked against its
 * SHA-256 and size. The arguments' blobs are kept for the sandbox's life (one sandbox, one
 * job), the datums' while they add up to at most DATUM_BLOBS_KEPT_BYTES (the most recently
 * used). Python work functions receive
 * the bytes as `bytes` (handed to the runtime with SliceRuntime.add_blob, a datum's for its
 * slice only), JavaScript ones as a Uint8Array. A blob that does not
 * arrive or does not match fails the init or the slice (StoreError), never the sandbox. A result
 * whose JSON is over the slice's `upload.limitBytes` (a `result` frame could not carry it) has
 * every bytes value over MAX_INLINE_BYTES stored in the portal's store (PUT /store/<sha256>,
 * `Authorization: DCP-Worker <ticket>`: the ticket names the job, whose owner owns the object)
 * and sent as a blob reference instead.
 * Work functions reach none of this: their fetch is still refused.
 *
 * Snapshots. Booting Python takes most of a Pyodide start. The first sandbox of a page that
 * loads Pyodide is asked for a memory snapshot (loadPyodide's `_makeSnapshot` option, then
 * `pyodide.makeMemorySnapshot()`), taken after Pyodide and the runtime module loaded and before
 * any work function ran; later sandboxes start from it (`_loadSnapshot`), which skips the boot.
 * A snapshot holds the wasm memory only: the file system starts empty again (the runtime file is
 * files are written anew), and `random` is reseeded so that sandboxes do not repeat each other's numbers
 * (the str hash seed is the snapshot's, shared by the sandboxes started from it). A snapshot
 * that does not restore falls back to an ordinary start. Each snapshot has a tag (snapshotTagFor:
 * Pyodide's version and folder, the browser, the runtime files' SHA-256 and the source of the
 * code that runs before it is taken), sent with it; a snapshot given with another tag than this
 * sandbox's is not used (the page may keep snapshots across visits, see sandbox-pool.js).
 *
 * Work functions. The rules live in the shared runtimes, not here: Python work functions run in
 * dcp/runtime/slice.py (the same file local_exec runs under CPython), JavaScript ones through
 * dcp/runtime/slice.mjs (the same module local_exec runs under node). In short: the source is
 * compiled once per job; the work function is `work` (else the last top-level def in Python, or
 * a function expression in JS); `progress(value)` is a global (and `from dcp import progress` in
 * Python) taking 0..1, "50%" or nothing, and an invalid value fails the slice even if caught;
 * print()/console lines are forwarded; a result must be JSON.
 *
 * Packages (docs/packages.md). Before a Python job's work function compiles, the sandbox loads
 * the job's Pyodide packages with loadPackage (its fetch reaches the Pyodide folder only while
 * they load; with blobsFromPage each package file the lock file lists is asked of the page, as
 * blobs are, and checked against the lock file's SHA-256), fetches each of its wheels from the store as it fetches blobs (downloadBlob: the
 * hash checked; then the size), and installs them with dcp/runtime/packages.py's
 * install_wheels into JOB_PACKAGES_DIR, first on sys.path. A wheel that cannot be had fails the
 * init as ENOPACKAGE, one that fails the wheel check as EUNSAFEWHEEL, naming the package. The
 * job's files (job.fs, a zip archive in the store) are fetched the same way and unpacked
 * read-only into JOB_FILES_DIR, the current directory (mount_job_files; EUNSAFEFILES).
 *
 * Pyodide's files. With blobsFromPage, loadPyodide's fetches of Pyodide's own files (the
 * interpreter's wasm, the standard library, the lock file) are answered from the page too
 * ({type: "fetchBlob", sha256: null, file}): the page fetches each once, through the browser's
 * HTTP cache, for all its sandboxes, where each sandbox of the opaque frame fetched all 12 MB
 * again for itself, for every job and core.
 *
 * Runtime files. The portal serves them beside this script at /worker/runtime/ (see
 * dcp/runtime/runtimes.py): slice.mjs and gpu.mjs, imported below, and slice.py, gpu.py,
 * wgsl.py, values.py and packages.py, fetched when Pyodide loads, written into Pyodide's file system as the package
 * `dcp_sandbox` and imported as `dcp_sandbox.slice`. The portal also generates
 * /worker/runtime/manifest.mjs, `export default {"slice.py": "sha256-...", ...}`, from the
 * files it serves; each .py file is fetched with its hash as its
 * Subresource Integrity, so a sandbox never runs a runtime other than the one the portal
 * describes (a stale cache or a half-finished deploy fails the warm or init instead).
 * Everything is found relative to this script's own URL.
 *
 * Security. Before any work function runs, the sandbox keeps private copies of what it uses itself
 * (its port, JSON, Function, console, performance.now, Atomics, the array methods of its request
 * queue) and never lets a promise call a `then` a work function could have replaced, so a work
 * function that replaces those globals changes nothing but its own view of them. Every network
 * entry point of the worker scope (fetch, XMLHttpRequest, WebSocket, EventSource, WebTransport,
 * importScripts, nested workers, BroadcastChannel, postMessage to the page) is replaced by a stub
 * that throws "network access is not allowed in a sandbox"; that includes Python's `js.fetch` and
 * `pyodide.http`. The portal origin's storage (indexedDB, caches, navigator.storage with the
 * origin private file system, navigator.storageBuckets, navigator.locks, the old webkit file
 * system calls) throws "storage access is not allowed in a sandbox", and devices (navigator.usb,
 * .hid, .serial, .bluetooth) "device access is not allowed in a sandbox". The real fetch is kept
 * privately and used only to load Pyodide's own files (and a job's Pyodide packages) and the
 * runtime's .py files, and for the job's blobs, wheels and big results in the portal's store. As the second layer the portal
 * serves this file with a Content-Security-Policy that limits script and connect sources to the
 * Pyodide vendor folder, the runtime folder and (connect only) the store. The exact header
 * (portal/web/worker_files.py, which the tests use too), with ORIGIN the portal origin (a CSP path
 * needs a host, so the server writes in its own):
 *
 *   Content-Security-Policy: default-src 'none';
 *       script-src ORIGIN/worker/vendor/pyodide/ ORIGIN/worker/runtime/ 'wasm-unsafe-eval'
 *       'unsafe-eval'; connect-src ORIGIN/worker/vendor/pyodide/ ORIGIN/worker/runtime/
 *       ORIGIN/store/
 *
 * script-src admits the import() of pyodide.mjs and pyodide.asm.mjs and the imports of
 * runtime/slice.mjs, values.mjs, gpu.mjs and manifest.mjs; connect-src the fetches of the wasm,
 * the standard library zip, the lock file and the runtime's .py files, and of the store's
 * objects; 'wasm-unsafe-eval' lets Pyodide compile its wasm
 * (enough for Python jobs); 'unsafe-eval' is needed only to compile JS work functions (new
 * Function). default-src 'none' also forbids nested workers and every other load, and import()
 * of any other URL (blob: and data: included) is refused.
 */

import {
  clipConsoleLine, compileWorkFunction, consoleFor, describe, errorReply, progressFunction, runSlice,
} from "./runtime/slice.mjs";
import RUNTIME_INTEGRITY from "./runtime/manifest.mjs";
import { gpuHelpers } from "./runtime/gpu.mjs";
import {
  BLOB_TAG, BYTES_TAG, MAX_INLINE_BYTES, OBJECT_TAG, SIZE_KEY, fromBase64Text, references,
} from "./runtime/values.mjs";

const PROGRESS_BURST = 20; // progress messages sent at once before throttling starts
const PROGRESS_INTERVAL_MS = 50; // then at most one progress message per interval
const MAX_CONSOLE_MESSAGES = 1000; // per slice (or per init)
const PYODIDE_FETCHED_FILES = ["pyodide.asm.wasm", "python_stdlib.zip", "pyodide-lock.json"];
const RUNTIME_URL = new URL("./runtime/", import.meta.url); // where the portal serves them
const STORE_URL = new URL("/store/", import.meta.url); // the portal's store: ORIGIN/store/<sha256>
// A bytes value whose base64 is longer than this is stored rather than sent inline (values.py).
const MAX_INLINE_BASE64_CHARS = Math.ceil(MAX_INLINE_BYTES / 3) * 4;
// The Python runtime's files (slice.py, gpu.py, wgsl.py: the manifest's .py files) form the
// package dcp_sandbox inside Pyodide; slice.py is its module dcp_sandbox.slice.
const PYTHON_RUNTIME_FILES = Object.keys(RUNTIME_INTEGRITY).filter((name) => name.endsWith(".py"));
const PYTHON_RUNTIME_PACKAGE = "dcp_sandbox";
const PYTHON_RUNTIME_MODULE = `${PYTHON_RUNTIME_PACKAGE}.slice`;
const PYTHON_RUNTIME_DIR = "/dcp_runtime"; // in Pyodide's file system, on sys.path
// Part of every snapshot's tag (snapshotTagFor): raise it when what a snapshot holds changes in a
// way the tag's other parts do not show.
const SNAPSHOT_FORMAT = 1;
// Run in every sandbox once Pyodide is up, in a namespace of its own (a snapshot has done it
// before, but its random state is the same in every sandbox started from it). The GPU module is
// imported here too, so that a snapshot holds it compiled.
const PYTHON_SETUP = `
import importlib, random, sys
if ${JSON.stringify(PYTHON_RUNTIME_DIR)} not in sys.path:
    sys.path.append(${JSON.stringify(PYTHON_RUNTIME_DIR)})
importlib.invalidate_caches()
importlib.import_module(${JSON.stringify(`${PYTHON_RUNTIME_PACKAGE}.gpu`)})
random.seed()
`;
// A job whose source names the GPU runs its slices with stack switching (JSPI), so that the
// GPU module's synchronous calls can wait for WebGPU's promises (pyodide.ffi.run_sync).
const GPU_SOURCE = /\bgpu\b/;

// ------------------------------------------------------------------------- private copies

// Taken before lockdown and before any work function runs; only this module can reach them, so
// a work function that replaces the globals (JSON.stringify, Function, console.log,
// Promise.prototype.then, ...) changes what it sees itself, not what the sandbox does.
const uncurryThis = Function.prototype.bind.bind(Function.prototype.call);
const realFetch = globalThis.fetch.bind(globalThis);
const responseBytes = uncurryThis(Response.prototype.arrayBuffer);
const responseText = uncurryThis(Response.prototype.text);
const responseStatus = uncurryThis(Object.getOwnPropertyDescriptor(Response.prototype, "status").get);
// crypto.subtle exists in secure contexts only (https, or http on the machine itself).
const subtleDigest = globalThis.crypto?.subtle ? globalThis.crypto.subtle.digest.bind(globalThis.crypto.subtle) : null;
const mapGet = uncurryThis(Map.prototype.get);
const mapSet = uncurryThis(Map.prototype.set);
const mapDelete = uncurryThis(Map.prototype.delete);
const mapForEach = uncurryThis(Map.prototype.forEach);
const utf8 = new TextEncoder();
const encodeUtf8 = uncurryThis(TextEncoder.prototype.encode);
const { isArray } = Array;
const { defineProperty, keys: objectKeys } = Object;
const { parse: parseJson, stringify: stringifyJson } = JSON;
const FunctionConstructor = Function;
const PromiseConstructor = Promise;
const ResponseConstructor = Response;
const now = performance.now.bind(performance);
const storeAtomic = Atomics.store;
const loadAtomic = Atomics.load;
const waitAtomic = Atomics.wait;
const hasOwn = Object.hasOwn;
const arrayPush = uncurryThis(Array.prototype.push);
const arrayShift = uncurryThis(Array.prototype.shift);
const messageData = uncurryThis(Object.getOwnPropertyDescriptor(MessageEvent.prototype, "data").get);
const stopListening = self.removeEventListener.bind(self);
const closeWorker = self.close.bind(self);
// The page's own console methods, kept before `console` is pointed at the slice's output.
const realConsole = { log: console.log.bind(console), error: console.error.bind(console) };
// WebGPU as found before any work function ran; work functions reach it through the `gpu`
// helpers (JavaScript) and the dcp_webgpu module (Python's dcp.gpu), once the page allows it.
const realNavigatorGpu = navigator.gpu ?? null;
let gpuForWork = null; // realNavigatorGpu once the page allows work functions the GPU
let gpuDecided = false;
let jsGpu = gpuHelpers(null, now); // the `gpu` global of JavaScript work functions

// ---------------------------------------------------------------------------------- lockdown

// What each kind of blocked entry point throws: `${kind} access is not allowed in a sandbox`.
const BLOCKED_KINDS = Object.freeze({
  network: "SandboxNetworkError",
  storage: "SandboxStorageError",
  device: "SandboxDeviceError",
});

class SandboxAccessError extends Error {
  constructor(kind) {
    super(`${kind} access is not allowed in a sandbox`);
    this.name = BLOCKED_KINDS[kind];
  }
}

function blockedFunction(name, kind) {
  // A plain function, so `new WebSocket(...)` and `fetch(...)` both throw the same clear error.
  const blocked = function () {
    throw new SandboxAccessError(kind);
  };
  Object.defineProperty(blocked, "name", { value: name });
  return blocked;
}

/** Removes `name` from `target` and its prototypes, then pins `descriptor` on `target`. */
function replaceProperty(target, name, descriptor) {
  for (let scope = target; scope; scope = Object.getPrototypeOf(scope)) {
    if (hasOwn(scope, name)) delete scope[name];
  }
  Object.defineProperty(target, name, { ...descriptor, configurable: false, enumerable: false });
}

function replaceGlobal(name, descriptor) {
  replaceProperty(globalThis, name, descriptor);
}

let pyodideLoading = null; // {indexURL} while loadPyodide() runs, else null
// {indexURL, files} while a job's Pyodide packages load, else null; files (file name -> the
// lock file's SHA-256) when the page hands the sandbox its files (blobsFromPage)
let pyodidePackagesLoading = null;

/** The only fetch the worker scope has: Pyodide's own files while it loads, and its packages'
 * files (in its folder) while a job's Pyodide packages load before the job's code; nothing else. */
function guardedFetch(resource, options) {
  const url = new URL(resource instanceof Request ? resource.url : String(resource), import.meta.url);
  if (!pyodideMayFetch(url)) throw new SandboxAccessError("network");
  const file = url.pathname.slice(url.pathname.lastIndexOf("/") + 1);
  if (pyodideLoading && blobsFromPage) return pyodideFileFromPage(file);
  const sha256 = pyodidePackagesLoading?.files ? mapGet(pyodidePackagesLoading.files, file) : undefined;
  if (sha256) return packageFileFromPage(sha256, file);
  return realFetch(resource, options);
}

// What loadPyodide's fetches of its own files are answered with (instantiateStreaming needs
// the wasm's type).
const PYODIDE_FILE_TYPES = { wasm: "application/wasm", zip: "application/zip", json: "application/json" };

/** One of Pyodide's own files (PYODIDE_FETCHED_FILES) as the page keeps it for all its
 * sandboxes (see "Pyodide's files"); a Response, as loadPyodide expects of fetch. */
async function pyodideFileFromPage(file) {
  const bytes = await askPageForBlob(null, file);
  const type = PYODIDE_FILE_TYPES[file.slice(file.lastIndexOf(".") + 1)] ?? "application/octet-stream";
  return new ResponseConstructor(bytes, { status: 200, headers: { "Content-Type": type } });
}

/** A Pyodide package's file, as the page keeps it (see "Packages"), checked against the lock
 * file's SHA-256; a Response, as loadPackage expects of fetch. */
async function packageFileFromPage(sha256, file) {
  const bytes = await downloadBlob(sha256, file);
  return new ResponseConstructor(bytes, { status: 200, headers: { "Content-Type": "application/octet-stream" } });
}

function pyodideMayFetch(url) {
  if (pyodideLoading) {
    return PYODIDE_FETCHED_FILES.some((name) => url.href === new URL(name, pyodideLoading.indexURL).href);
  }
  const folder = pyodidePackagesLoading?.indexURL;
  return Boolean(folder) && url.href.startsWith(folder) && !url.search && !url.href.slice(folder.length).includes("/");
}

// Entry points by kind: functions of the worker scope, getters of the worker scope and of
// navigator. A name this browser lacks is pinned all the same, so no later code can add it.
const BLOCKED = Object.freeze({
  network: {
    functions: [
      "XMLHttpRequest", "WebSocket", "WebSocketStream", "EventSource", "WebTransport",
      "importScripts", "Worker", "SharedWorker", "BroadcastChannel", "postMessage", "fetchLater",
    ],
  },
  storage: {
    functions: [
      "webkitRequestFileSystem", "webkitRequestFileSystemSync", "webkitResolveLocalFileSystemURL",
      "webkitResolveLocalFileSystemSyncURL",
    ],
    getters: ["indexedDB", "caches"],
    navigator: ["storage", "storageBuckets", "locks"],
  },
  device: { navigator: ["usb", "hid", "serial", "bluetooth"] },
});

function lockDownGlobals() {
  for (const [kind, { functions = [], getters = [], navigator: fields = [] }] of Object.entries(BLOCKED)) {
    for (const name of functions) replaceGlobal(name, { value: blockedFunction(name, kind), writable: false });
    for (const name of getters) replaceGlobal(name, { get: blockedFunction(name, kind) });
    for (const name of fields) replaceProperty(navigator, name, { get: blockedFunction(name, kind) });
  }
  replaceGlobal("fetch", { value: guardedFetch, writable: false });
}

lockDownGlobals();

// ---------------------------------------------------------------------------------- memory

const WASM_PAGE_BYTES = 65_536;
const memoryPrototype = WebAssembly.Memory.prototype;
const growMemory = uncurryThis(memoryPrototype.grow);
const memoryBuffer = uncurryThis(Object.getOwnPropertyDescriptor(memoryPrototype, "buffer").get);
const byteLengthGetter = (type) => uncurryThis(Object.getOwnPropertyDescriptor(type.prototype, "byteLength").get);
const arrayBufferBytes = byteLengthGetter(ArrayBuffer);
// SharedArrayBuffer exists only where the page is cross-origin isolated; a shared memory's buffer is one.
const sharedBufferBytes = globalThis.SharedArrayBuffer ? byteLengthGetter(SharedArrayBuffer) : null;

let memoryLimitBytes = Infinity; // the page's limit, from connect
let blobsFromPage = false; // the page answers fetchBlob (connect's blobsFromPage), else fetch them

function memoryBytes(memory) {
  const buffer = memoryBuffer(memory); // throws, as grow would, when `memory` is not a Memory
  try {
    return arrayBufferBytes(buffer);
  } catch (error) {
    if (!sharedBufferBytes) throw error;
    return sharedBufferBytes(buffer);
  }
}

/** WebAssembly.Memory.prototype.grow in a sandbox: a memory may not grow past the page's limit.
 * A refusal is told to the page at once, from inside the slice that asked. */
function grow(delta) {
  // Converted once (a valueOf could answer differently twice); a memory64 grows by a BigInt.
  const pages = typeof delta === "bigint" ? delta : Number(delta);
  const bytes = memoryBytes(this) + Number(pages) * WASM_PAGE_BYTES;
  if (bytes > memoryLimitBytes) {
    post({ type: "memory", bytes, limitBytes: memoryLimitBytes });
    throw new RangeError(`WebAssembly.Memory.grow(): a sandbox may not use more than ${memoryLimitBytes} bytes`);
  }
  return growMemory(this, pages);
}

function refuseResizableMemory() {
  throw new TypeError("resizable WebAssembly memory is not available in a sandbox");
}

replaceProperty(memoryPrototype, "grow", { value: grow, writable: false });
// A resizable buffer of a memory would grow it without calling grow.
for (const name of ["toResizableBuffer", "toFixedLengthBuffer"]) {
  if (name in memoryPrototype) replaceProperty(memoryPrototype, name, { value: refuseResizableMemory, writable: false });
}

// -------------------------------------------------------------------------- the page's port

let postToPage = null; // the private port's postMessage, bound once the page connects
let interruptBuffer = null;
let doorbell = null; // Int32Array on a SharedArrayBuffer: [requests the page has sent, let go]
let requestsReceived = 0;

/** WebGPU for this sandbox's work functions, or (the worker's "Use GPU" switch is off) none:
 * navigator.gpu then throws "device access is not allowed in a sandbox". */
function allowGpu(allowed) {
  if (gpuDecided) return; // by the first init: one sandbox, one job
  gpuDecided = true;
  if (!allowed) replaceProperty(navigator, "gpu", { get: blockedFunction("gpu", "device") });
  gpuForWork = allowed ? realNavigatorGpu : null;
  jsGpu = gpuHelpers(gpuForWork, now);
}

/** What Python's dcp.gpu uses of WebGPU, as the module dcp_webgpu. Pyodide's `js` module cannot
 * read the global scope's getters (navigator among them) in the sandbox that made the snapshot. */
function webgpuModule() {
  return Object.freeze({
    get gpu() {
      return gpuForWork; // read when the job's code first asks: its init has said
    },
    GPUBufferUsage: globalThis.GPUBufferUsage ?? null,
    GPUMapMode: globalThis.GPUMapMode ?? null,
    GPUShaderStage: globalThis.GPUShaderStage ?? null,
    Object, Array, Uint8Array,
  });
}

/** The page's first message hands over the port; the worker scope is never listened to again. */
function connect(event) {
  stopListening("message", connect);
  const { type, id, port, interruptBuffer: buffer, doorbell: bell, memoryLimitBytes: limit, blobsFromPage: fromPage } =
    messageData(event) ?? {};
  if (type !== "connect" || !(port instanceof MessagePort)) {
    realConsole.error("sandbox: the page's first message must be connect with a MessagePort");
    return;
  }
  postToPage = port.postMessage.bind(port);
  port.onmessage = receive;
  interruptBuffer = buffer ?? null;
  doorbell = bell instanceof Int32Array ? bell : null;
  if (typeof limit === "number" && limit > 0) memoryLimitBytes = limit;
  blobsFromPage = fromPage === true;
  post({ type: "ready", id, jobId: null, pyodideLoaded: false, fromSnapshot: false });
}

self.addEventListener("message", connect);

function post(message, transfer = []) {
  postToPage?.(message, transfer);
}

// One request at a time, in arrival order: a slice never overlaps the init before it. The loop
// only awaits the sandbox's own promises: a promise resolved with another one would call its
// `then`, which a work function may have replaced (Promise.prototype.then).
const inbox = [];
let draining = false;

function receive(event) {
  const data = messageData(event);
  if (data?.type === "blob") {
    answerBlob(data); // an answer within a request, which the page does not ring for
    return;
  }
  requestsReceived = (requestsReceived + 1) | 0; // as the Int32 doorbell counts (and wraps)
  arrayPush(inbox, data);
  if (!draining) drain();
}

async function drain() {
  draining = true;
  while (inbox.length > 0) {
    try {
      await handle(arrayShift(inbox));
    } catch (error) {
      realConsole.error("sandbox internal error", error);
    }
  }
  draining = false;
  if (userCodeRan) sleepUntilTheNextRequest();
}

/** Blocks the thread until the page rings for a request not received yet, so that no code of
 * the job runs between its requests; closes the worker if the page let it go instead. The page
 * rings after it sends, so the request is on its way when the sandbox wakes; a ring that comes
 * after its request was received is waited out, so none wakes the sandbox for nothing. */
function sleepUntilTheNextRequest() {
  if (!doorbell) return;
  try {
    for (;;) {
      const rung = loadAtomic(doorbell, 0);
      if (((rung - requestsReceived) | 0) > 0 || loadAtomic(doorbell, 1) !== 0) break;
      waitAtomic(doorbell, 0, rung);
    }
  } catch (error) {
    doorbell = null; // this worker may not block: it stays awake between requests
    realConsole.error("sandbox: cannot wait for the page's requests", error);
    return;
  }
  if (loadAtomic(doorbell, 1) !== 0) closeWorker();
}

// ---------------------------------------------------------------------------- reporting

let activeRequest = null; // the warm, init or slice being handled: {id, slice, ...counters}

function newRequestState(id, slice) {
  return {
    id,
    slice,
    consoleCount: 0,
    progressTokens: PROGRESS_BURST,
    progressCheckedAt: now(),
    pendingProgress: undefined, // {value} held back by the throttle
    progressProblem: null, // the first invalid progress() of a JS work function
  };
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
// reach the page as worker errors: the pool reads those as "the sandbox died".
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
  const at = now();
  state.progressTokens = Math.min(
    PROGRESS_BURST, state.progressTokens + (at - state.progressCheckedAt) / PROGRESS_INTERVAL_MS);
  state.progressCheckedAt = at;
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

// -------------------------------------------------------------------------------- blobs

/** A blob that could not be fetched or checked, or a result the store did not take. */
class StoreError extends Error {
  constructor(message) {
    super(message);
    this.name = "StoreError";
  }
}

// The blobs of the datums are kept while they add up to at most this (the most recently used
// first); the arguments' blobs are kept for the sandbox's life.
const DATUM_BLOBS_KEPT_BYTES = 64 * 1024 * 1024;
const blobBytes = new Map(); // sha256 -> the checked bytes of a blob (a Uint8Array), once fetched
const pinnedBlobs = new Map(); // sha256 -> true: the job's arguments' blobs

/** Fetches every blob the encoded `value` references that this sandbox does not hold yet. */
async function fetchBlobs(value, what) {
  let refs;
  try {
    refs = references(value);
  } catch (error) {
    throw new TypeError(`${what} breaks the value encoding: ${error.message}`);
  }
  for (let index = 0; index < refs.length; index += 1) {
    const { sha256, size } = refs[index];
    const bytes = mapGet(blobBytes, sha256) ?? (await downloadBlob(sha256));
    mapDelete(blobBytes, sha256); // set again: the most recently used is the last
    mapSet(blobBytes, sha256, bytes); // it hashes to its name, whatever a reference says
    if (bytes.length !== size) {
      throw new StoreError(`blob ${sha256} is ${bytes.length} bytes, not the ${size} that ${what} says`);
    }
    noteTransfer();
  }
}

/** The arguments' blobs are kept for the sandbox's life (they are fetched already). */
function pinBlobs(args) {
  const refs = references(args);
  for (let index = 0; index < refs.length; index += 1) mapSet(pinnedBlobs, refs[index].sha256, true);
}

/** Forgets the least recently used datums' blobs while they add up to more than
 * DATUM_BLOBS_KEPT_BYTES. */
function trimBlobs() {
  const datumBlobs = [];
  let total = 0;
  mapForEach(blobBytes, (bytes, sha256) => {
    if (mapGet(pinnedBlobs, sha256)) return;
    arrayPush(datumBlobs, sha256);
    total += bytes.length;
  });
  for (let index = 0; index < datumBlobs.length && total > DATUM_BLOBS_KEPT_BYTES; index += 1) {
    total -= mapGet(blobBytes, datumBlobs[index]).length;
    mapDelete(blobBytes, datumBlobs[index]);
  }
}

/** A blob's bytes from the portal's store (through the page when it offers them, see "Blobs"),
 * checked against its name. */
async function downloadBlob(sha256, pyodideFile = null) {
  const bytes = blobsFromPage ? await askPageForBlob(sha256, pyodideFile) : await fetchBlob(sha256);
  const digest = await sha256Hex(bytes);
  if (digest !== sha256) {
    throw new StoreError(`blob ${sha256} from the portal's store hashes to ${digest}: these are not its bytes`);
  }
  return bytes;
}

async function fetchBlob(sha256) {
  let response;
  try {
    response = await realFetch(new URL(sha256, STORE_URL).href);
  } catch (error) {
    throw new StoreError(`blob ${sha256} could not be fetched from the portal's store: ${error.message}`);
  }
  const status = responseStatus(response);
  if (status !== 200) {
    throw new StoreError(`blob ${sha256} could not be fetched from the portal's store: HTTP ${status}${await storeSays(response)}`);
  }
  return new Uint8Array(await responseBytes(response));
}

const blobsAsked = new Map(); // sha256 -> [{resolve, reject}, ...]: asked of the page, not answered

/** Asks the page for a blob's bytes ({type: "fetchBlob", sha256, file}: `file` names a file of
 * the Pyodide folder instead of an object of the store); its answer, {type: "blob", sha256,
 * bytes} or {type: "blob", sha256, error}, is taken by receive() outside the inbox. */
function askPageForBlob(sha256, file) {
  const key = sha256 ?? `file:${file}`;
  return new PromiseConstructor((resolve, reject) => {
    const waiting = mapGet(blobsAsked, key);
    if (waiting) {
      arrayPush(waiting, { resolve, reject });
      return;
    }
    mapSet(blobsAsked, key, [{ resolve, reject }]);
    post({ type: "fetchBlob", sha256, file });
  });
}

function answerBlob({ sha256, file, bytes, error }) {
  const key = sha256 ?? `file:${file}`;
  const waiting = mapGet(blobsAsked, key);
  if (!waiting) return;
  mapDelete(blobsAsked, key);
  for (let index = 0; index < waiting.length; index += 1) {
    if (bytes instanceof Uint8Array) waiting[index].resolve(bytes);
    else waiting[index].reject(new StoreError(String(error ?? `the page had no blob ${sha256}`)));
  }
}

/** The bytes of a blob the datum or the arguments reference (fetched before they are decoded);
 * a copy, so that a work function that changes it changes nothing for the next slice. */
function resolveBlob({ sha256 }) {
  const bytes = mapGet(blobBytes, sha256);
  if (!bytes) throw new StoreError(`blob ${sha256} was not fetched`);
  return bytes.slice();
}

async function sha256Hex(bytes) {
  if (!subtleDigest) {
    throw new StoreError("checking a blob needs crypto.subtle, which only a secure context (https) has");
  }
  const digest = new Uint8Array(await subtleDigest("SHA-256", bytes));
  let hex = "";
  for (let index = 0; index < digest.length; index += 1) hex += (digest[index] | 0x100).toString(16).slice(1);
  return hex;
}

/** " (CODE: message)" of a store's error answer, or "" when it has none. */
async function storeSays(response) {
  try {
    const { code, message } = parseJson(await responseText(response)).error;
    return ` (${code}: ${message})`;
  } catch {
    return "";
  }
}

/** A slice's blob arrived or was stored: its lease is worth extending (a large one takes a while). */
function noteTransfer() {
  const state = runningSlice();
  if (state) recordProgress(state, null);
}

/** A result's encoded value, with every bytes value over MAX_INLINE_BYTES stored in the portal's
 * store and referenced instead, when its JSON is over `upload.limitBytes`; as it is otherwise. */
async function storeLargeBytes(value, upload) {
  const limit = upload?.limitBytes;
  if (typeof upload?.ticket !== "string" || !(limit > 0) || fitsIn(value, limit)) return value;
  return withLargeBytesStored(value, upload);
}

/** Whether the JSON of `value` takes at most `limit` bytes of UTF-8. */
function fitsIn(value, limit) {
  const text = stringifyJson(value);
  // UTF-8 takes at most 3 bytes per UTF-16 unit: encode only when that bound is too high.
  return text.length * 3 <= limit || encodeUtf8(utf8, text).length <= limit;
}

async function withLargeBytesStored(value, upload) {
  if (isArray(value)) {
    const stored = [];
    for (let index = 0; index < value.length; index += 1) stored[index] = await withLargeBytesStored(value[index], upload);
    return stored;
  }
  if (value === null || typeof value !== "object" || hasOwn(value, BLOB_TAG)) return value;
  if (hasOwn(value, BYTES_TAG)) {
    const text = value[BYTES_TAG];
    return typeof text === "string" && text.length > MAX_INLINE_BASE64_CHARS ? storeBytes(fromBase64Text(text), upload) : value;
  }
  if (hasOwn(value, OBJECT_TAG)) return { [OBJECT_TAG]: await entriesWithLargeBytesStored(value[OBJECT_TAG], upload) };
  return entriesWithLargeBytesStored(value, upload);
}

async function entriesWithLargeBytesStored(object, upload) {
  const stored = {};
  const keys = objectKeys(object);
  for (let index = 0; index < keys.length; index += 1) {
    const value = await withLargeBytesStored(object[keys[index]], upload);
    defineProperty(stored, keys[index], { value, enumerable: true, writable: true, configurable: true });
  }
  return stored;
}

/** Stores `bytes` for the job with the worker's upload ticket for it; their reference. */
async function storeBytes(bytes, { ticket }) {
  const sha256 = await sha256Hex(bytes);
  const what = `a result of ${bytes.length} bytes could not be stored in the portal's store`;
  let response;
  try {
    response = await realFetch(new URL(sha256, STORE_URL).href, {
      method: "PUT",
      body: bytes,
      cache: "no-store",
      headers: { Authorization: `DCP-Worker ${ticket}`, "Content-Type": "application/octet-stream" },
    });
  } catch (error) {
    throw new StoreError(`${what}: ${error.message}`);
  }
  const status = responseStatus(response);
  if (status !== 200 && status !== 201) throw new StoreError(`${what}: HTTP ${status}${await storeSays(response)}`);
  noteTransfer();
  return { [BLOB_TAG]: sha256, [SIZE_KEY]: bytes.length };
}

// ---------------------------------------------------------------------------- JavaScript

function startJsJob(job) {
  userCodeRan = true;
  replaceGlobal("gpu", { value: jsGpu, writable: false });
  // new Function bodies run in the global scope: work code cannot see this module's variables.
  const work = compileWorkFunction(job.source, (body) => new FunctionConstructor(body)());
  const args = job.args ?? [];
  return {
    run: (slice, datum) => runSlice(work, args, slice, datum, activeRequest, resolveBlob),
    takeGpuMs: jsGpu.takeGpuMs,
    dispose() {},
  };
}

// ------------------------------------------------------------------------------- Python

let pyodidePromise = null; // resolves to {pyodide, SliceRuntime, fromSnapshot}
let userCodeRan = false; // a work function's source has run here: no snapshot may be taken now

// What the Python runtime (slice.py) reports through: progress is already checked there.
const pythonHost = {
  report_progress: (value) => {
    const state = runningSlice();
    if (state) recordProgress(state, value ?? null);
  },
  console: (level, message) => sendConsole(level, message),
};

/** Loads Pyodide and the runtime once; `request` (a warm or init) says where from and whether
 * to start from a snapshot or take one. */
function loadPyodideOnce(request) {
  pyodidePromise ??= loadPythonRuntime(request).catch((error) => {
    pyodidePromise = null; // a later warm or init may retry
    throw error;
  });
  return pyodidePromise;
}

/** A snapshot for loadPyodide that it lets go of once read: the config keeps only this. */
function snapshotOnce(snapshot) {
  let held = snapshot;
  return {
    then(resolve) {
      const taken = held;
      held = null;
      resolve(taken);
    },
  };
}

async function startPyodide(indexURL, { snapshot, snapshotTag, makeSnapshot }) {
  pyodideLoading = { indexURL };
  try {
    const { loadPyodide, version } = await import(new URL("pyodide.mjs", indexURL).href);
    const tag = await snapshotTagFor(indexURL, version);
    const options = { indexURL, checkAPIVersion: true };
    if (snapshot && snapshotTag !== undefined && snapshotTag !== tag) {
      realConsole.error("sandbox: the Pyodide snapshot was taken by another runtime; starting without it");
    } else if (snapshot) {
      try {
        return { pyodide: await loadPyodide({ ...options, _loadSnapshot: snapshotOnce(snapshot) }), fromSnapshot: true, tag };
      } catch (error) {
        realConsole.error("sandbox: the Pyodide snapshot did not restore; starting without it", error);
      }
    }
    const pyodide = await loadPyodide(makeSnapshot ? { ...options, _makeSnapshot: true } : options);
    return { pyodide, fromSnapshot: false, tag };
  } finally {
    pyodideLoading = null;
  }
}

/** What a snapshot taken here holds besides Python itself: it restores only where the tag is the
 * same. Pyodide's version and folder, the browser, the runtime files (by their SHA-256) and the
 * code that runs before the snapshot is taken (PYTHON_SETUP and the functions that load Pyodide
 * and the runtime, by their source). Null where there is no crypto.subtle. */
async function snapshotTagFor(indexURL, pyodideVersion) {
  if (!subtleDigest) return null;
  const parts = [SNAPSHOT_FORMAT, indexURL, String(pyodideVersion), globalThis.navigator?.userAgent ?? "",
                 RUNTIME_INTEGRITY, PYTHON_SETUP, String(startPyodide), String(loadPythonRuntime)];
  return `${pyodideVersion}-${await sha256Hex(encodeUtf8(utf8, stringifyJson(parts)))}`;
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

async function loadPythonRuntime({ id, pyodideURL, snapshot, snapshotTag, makeSnapshot }) {
  if (typeof pyodideURL !== "string") throw new TypeError("loading Pyodide needs pyodideURL");
  const indexURL = new URL(pyodideURL.endsWith("/") ? pyodideURL : `${pyodideURL}/`, import.meta.url).href;
  const [{ pyodide, fromSnapshot, tag }, ...sources] = await Promise.all([
    startPyodide(indexURL, { snapshot, snapshotTag, makeSnapshot }),
    ...PYTHON_RUNTIME_FILES.map(fetchRuntimeFile),
  ]);
  pyodide.setStdout({ batched: (line) => sendConsole("log", line) });
  pyodide.setStderr({ batched: (line) => sendConsole("error", line) });
  pyodide.setStdin({ error: true });
  // Always set: a snapshot carries the interrupt flag of the sandbox that took it.
  pyodide.setInterruptBuffer(interruptBuffer ?? undefined);
  // A snapshot holds memory, not files: the runtime files are written in every sandbox.
  const packageDir = `${PYTHON_RUNTIME_DIR}/${PYTHON_RUNTIME_PACKAGE}`;
  pyodide.FS.mkdirTree(packageDir);
  pyodide.FS.writeFile(`${packageDir}/__init__.py`, "");
  PYTHON_RUNTIME_FILES.forEach((name, index) => pyodide.FS.writeFile(`${packageDir}/${name}`, sources[index]));
  runPythonPrivately(pyodide, PYTHON_SETUP);
  // The module stays for the sandbox's lifetime: SliceRuntime is an attribute borrowed from it.
  const module = pyodide.pyimport(PYTHON_RUNTIME_MODULE);
  if (makeSnapshot && !fromSnapshot) {
    sendSnapshot(pyodide, id, tag);
    // A Pyodide that takes snapshots gives Python a `js` module that cannot read the global
    // scope's getters (js.navigator throws "Illegal invocation"): this sandbox's job gets the
    // plain one, as every sandbox started from the snapshot has.
    pyodide.registerJsModule("js", globalThis);
    runPythonPrivately(pyodide, "import sys\nsys.modules.pop('js', None)");
  }
  pyodide.registerJsModule("dcp_webgpu", webgpuModule()); // after the snapshot: it holds JS objects
  return { pyodide, indexURL, SliceRuntime: module.SliceRuntime, fromSnapshot };
}

function runPythonPrivately(pyodide, code) {
  const namespace = pyodide.toPy({});
  try {
    pyodide.runPython(code, { globals: namespace });
  } finally {
    namespace.destroy();
  }
}

/** Sends the page a memory snapshot of Pyodide with the runtime loaded and no job's code run. */
function sendSnapshot(pyodide, id, tag) {
  if (userCodeRan) return; // never: Pyodide loads before a job's code runs
  let snapshot = null;
  let problem = null;
  try {
    snapshot = pyodide.makeMemorySnapshot();
  } catch (error) {
    problem = String(error?.message ?? error);
  }
  const buffer = snapshot ? snapshot.buffer : null;
  post({ type: "snapshot", id, snapshot: buffer, tag, problem }, buffer ? [buffer] : []);
}

/** Reply for a JS-level failure of the Python runtime itself: the sandbox is then unusable. */
function fatalPythonReply(error) {
  return { ...errorReply(error), name: error?.type ?? error?.name ?? "Error", fatal: true };
}

async function startPythonJob(job, init) {
  const { pyodide, indexURL, SliceRuntime } = await loadPyodideOnce(init);
  await installJobPackages(pyodide, indexURL, job);
  userCodeRan = true;
  const runtime = SliceRuntime.from_json(job.source, encodeJson(job.args ?? [], "the job's arguments"), pythonHost);
  const compile = runtime.compile_json;
  const run = runtime.run_json;
  const addBlob = runtime.add_blob;
  const forgetBlob = runtime.forget_blob;
  const dispose = () => [compile, run, addBlob, forgetBlob, runtime].forEach(destroyProxy);
  handBlobs(addBlob, job.args ?? [], false); // the arguments' blobs stay for the job's life
  const failure = compile();
  if (typeof failure === "string") {
    dispose();
    const { name, message, traceback } = parseJson(failure); // the source did not compile or run
    throw Object.assign(new Error(message), { name, traceback });
  }
  const call = GPU_SOURCE.test(job.source) && typeof run.callPromising === "function"
    ? (...args) => run.callPromising(...args)
    : run;
  const runWith = async (slice, datum) => {
    const handed = handBlobs(addBlob, datum, true); // the datum's, for this slice only
    try {
      return await runPythonSlice(call, slice, datum);
    } finally {
      forgetBlobs(forgetBlob, handed);
    }
  };
  return { run: runWith, dispose };
}

// ---------------------------------------------------------------------- a job's packages

// Where a job's wheels are unpacked, first on sys.path (dcp/runtime/packages.py, install_wheels).
const JOB_PACKAGES_DIR = "/home/pyodide/job-packages";
// Run in a namespace of its own that holds `wheels` ([[file, sha256, Uint8Array], ...]): sets
// `problem` to why a wheel may not be installed, or None.
const INSTALL_WHEELS = `
from ${PYTHON_RUNTIME_PACKAGE}.packages import UnsafeWheel, install_wheels
try:
    install_wheels(${JSON.stringify(JOB_PACKAGES_DIR)}, [(str(f), str(s), d.to_bytes()) for f, s, d in wheels])
    problem = None
except UnsafeWheel as error:
    problem = str(error)
`;

// Where a job's files (job.fs) are unpacked, read-only: the work function's current directory.
const JOB_FILES_DIR = "/home/pyodide/job";
// Run like INSTALL_WHEELS, with `files` ([sha256, Uint8Array]): sets `problem`, or None.
const MOUNT_JOB_FILES = `
from ${PYTHON_RUNTIME_PACKAGE}.packages import UnsafeJobFiles, mount_job_files
try:
    mount_job_files(${JSON.stringify(JOB_FILES_DIR)}, files[1].to_bytes(), str(files[0]))
    problem = None
except UnsafeJobFiles as error:
    problem = str(error)
`;

let jobPackagesInstalled = false; // once: an init again (after a failed compile) finds them

/** A job's package that its sandbox cannot install: `name` is the code, EUNSAFEWHEEL or ENOPACKAGE. */
class PackageError extends Error {
  constructor(code, message) {
    super(message);
    this.name = code;
  }
}

/** Before a Python job's code runs: its Pyodide packages loaded (loadPackage), its wheels fetched
 * from the portal's store (checked against their SHA-256) and installed with install_wheels. */
async function installJobPackages(pyodide, indexURL, job) {
  if (jobPackagesInstalled) return;
  const names = job.pyodide ?? [];
  const packages = job.packages ?? [];
  if (!isArray(names) || !isArray(packages)) throw new TypeError("job.packages and job.pyodide must be lists");
  if (names.length > 0) await loadPyodidePackages(pyodide, indexURL, names);
  const wheels = [];
  for (let index = 0; index < packages.length; index += 1) {
    const wheel = packages[index];
    arrayPush(wheels, [wheel.file, wheel.sha256, await downloadPackage(wheel)]);
  }
  const problem = wheels.length > 0 ? runWith(pyodide, INSTALL_WHEELS, "wheels", wheels) : null;
  if (problem) throw new PackageError("EUNSAFEWHEEL", `the job's package ${problem}`);
  if (job.fs) await mountJobFiles(pyodide, job.fs);
  jobPackagesInstalled = true;
}

/** The job's files (job.fs): fetched like a wheel, checked and unpacked by mount_job_files. */
async function mountJobFiles(pyodide, { sha256, size }) {
  let bytes;
  try {
    bytes = await downloadBlob(String(sha256));
  } catch (error) {
    throw new PackageError("ENOPACKAGE", `the job's files (job.fs) could not be had: ${error.message}`);
  }
  if (bytes.length !== size) throw new PackageError("ENOPACKAGE", `the job's files are ${bytes.length} bytes, not ${size}`);
  const problem = runWith(pyodide, MOUNT_JOB_FILES, "files", [String(sha256), bytes]);
  if (problem) throw new PackageError("EUNSAFEFILES", problem);
}

async function loadPyodidePackages(pyodide, indexURL, names) {
  const problems = [];
  pyodidePackagesLoading = { indexURL, files: blobsFromPage ? packageFiles(pyodide) : null };
  try {
    await pyodide.loadPackage(names, {
      messageCallback: () => {},
      errorCallback: (message) => arrayPush(problems, String(message)),
      checkIntegrity: true,
    });
  } catch (error) {
    arrayPush(problems, String(error?.message ?? error));
  } finally {
    pyodidePackagesLoading = null;
  }
  if (problems.length > 0) {
    throw new PackageError("ENOPACKAGE", `the job's Pyodide packages ${names.join(", ")} did not load: ${problems.join("; ")}`);
  }
}

/** File name -> SHA-256 of every package the loaded lock file lists (pyodide.lockfile). */
function packageFiles(pyodide) {
  const files = new Map();
  const packages = pyodide.lockfile?.packages ?? {};
  const names = objectKeys(packages);
  for (let index = 0; index < names.length; index += 1) {
    const { file_name: file, sha256 } = packages[names[index]] ?? {};
    if (typeof file === "string" && typeof sha256 === "string") mapSet(files, file, sha256);
  }
  return files;
}

/** A wheel's bytes from the portal's store, checked against its SHA-256 (downloadBlob) and size. */
async function downloadPackage({ name, file, sha256, size }) {
  const what = `the job's package ${name} (${file})`;
  let bytes;
  try {
    bytes = await downloadBlob(sha256);
  } catch (error) {
    throw new PackageError("ENOPACKAGE", `${what} could not be had: ${error.message}`);
  }
  if (bytes.length !== size) throw new PackageError("ENOPACKAGE", `${what} is ${bytes.length} bytes, not ${size}`);
  return bytes;
}

/** Runs `code` in a namespace of its own where `name` is `value`; its `problem` afterwards. */
function runWith(pyodide, code, name, value) {
  const namespace = pyodide.toPy({});
  try {
    namespace.set(name, value);
    pyodide.runPython(code, { globals: namespace });
    return namespace.get("problem");
  } finally {
    namespace.destroy();
  }
}

function forgetBlobs(forgetBlob, hashes) {
  try {
    for (let index = 0; index < hashes.length; index += 1) forgetBlob(hashes[index]);
  } catch {
    // the runtime failed with its slice: the reply says so, and the sandbox goes
  }
}

/** Hands the Python runtime (`addBlob`: its add_blob) the blobs an encoded value references
 * (`skipArguments`: but the arguments' blobs, handed already): the runtime decodes references
 * to them as `bytes`. Returns the hashes it handed. */
function handBlobs(addBlob, value, skipArguments) {
  const refs = references(value);
  const handed = [];
  for (let index = 0; index < refs.length; index += 1) {
    const { sha256 } = refs[index];
    const bytes = mapGet(blobBytes, sha256);
    if (bytes && !(skipArguments && mapGet(pinnedBlobs, sha256))) {
      addBlob(sha256, bytes);
      arrayPush(handed, sha256);
    }
  }
  return handed;
}

async function runPythonSlice(run, slice, datum) {
  let reply;
  try {
    reply = run(slice, encodeJson(datum, `the datum of slice ${slice}`));
    if (reply instanceof Promise) reply = await reply; // called with stack switching
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

let boundJobId = null; // the one job this sandbox serves, from its first init on
let currentJob = null; // {id, run(slice, datum) -> reply, dispose()}

class ProtocolError extends Error {
  constructor(message, { fatal = false } = {}) {
    super(message);
    this.name = "ProtocolError";
    this.fatal = fatal;
  }
}

function runtimeOf(job) {
  if (!job || typeof job !== "object") throw new TypeError("init needs a job object");
  if (typeof job.source !== "string") throw new TypeError("job.source must be source text");
  if (job.args !== undefined && !Array.isArray(job.args)) throw new TypeError("job.args must be a list");
  const language = job.language ?? "python";
  if (!hasOwn(RUNTIMES, language)) {
    const known = Object.keys(RUNTIMES).map((name) => `"${name}"`).join(" or ");
    throw new TypeError(`job.language must be ${known}, not ${stringifyJson(job.language)}`);
  }
  return RUNTIMES[language];
}

/** One sandbox, one job: the first init binds it, an init for any other job is refused. */
function bindTo(jobId) {
  if (boundJobId === null) boundJobId = jobId;
  if (boundJobId !== jobId) {
    throw new ProtocolError(`this sandbox serves job ${boundJobId} only, not job ${jobId}`, { fatal: true });
  }
}

async function handleWarm(request) {
  const { id } = request;
  activeRequest = newRequestState(id, null);
  try {
    if (boundJobId !== null) throw new ProtocolError("a sandbox is warmed before its job, not after");
    const { fromSnapshot } = await loadPyodideOnce(request);
    post({ type: "ready", id, jobId: null, pyodideLoaded: true, fromSnapshot });
  } catch (error) {
    post({ type: "error", id, ...describeInitError(error) });
  } finally {
    activeRequest = null;
  }
}

async function handleInit(init) {
  const { id, job } = init;
  activeRequest = newRequestState(id, null);
  try {
    const runtime = runtimeOf(job);
    bindTo(job.id);
    allowGpu(init.gpu !== false);
    await fetchBlobs(job.args ?? [], "the job's arguments");
    pinBlobs(job.args ?? []);
    currentJob?.dispose();
    currentJob = null;
    currentJob = { id: job.id, ...(await runtime.start(job, init)) };
    const fromSnapshot = pyodidePromise ? (await pyodidePromise).fromSnapshot : false;
    post({ type: "ready", id, jobId: job.id, pyodideLoaded: pyodidePromise !== null, fromSnapshot });
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
    ...(error?.fatal === true ? { fatal: true } : {}),
  };
}

async function handleSlice({ id, slice, datum, upload }) {
  if (!currentJob) {
    post({ type: "error", id, slice, name: "ProtocolError",
           message: "no work function compiled: send init first", traceback: "" });
    return;
  }
  const state = newRequestState(id, slice);
  activeRequest = state;
  if (interruptBuffer) storeAtomic(interruptBuffer, 0, 0); // forget a late interrupt
  let reply;
  try {
    await fetchBlobs(datum, `the datum of slice ${slice}`);
    reply = await currentJob.run(slice, datum);
    if (reply.type === "result") reply = { ...reply, value: await storeLargeBytes(reply.value, upload) };
  } catch (error) {
    reply = errorReply(error);
  } finally {
    activeRequest = null;
    trimBlobs();
  }
  if (state.pendingProgress) sendProgress(state, state.pendingProgress.value);
  if (reply.type === "result") {
    const gpuMs = reply.gpuMs ?? currentJob.takeGpuMs?.();
    post({ type: "result", id, slice, value: reply.value, ...(gpuMs > 0 ? { gpuMs } : {}) });
  } else {
    const { type: _type, ...error } = reply;
    post({ type: "error", id, slice, ...error });
  }
}

const HANDLERS = Object.freeze({ warm: handleWarm, init: handleInit, slice: handleSlice });

async function handle(message) {
  const handler = hasOwn(HANDLERS, message?.type) ? HANDLERS[message.type] : null;
  if (handler) {
    await handler(message);
    return;
  }
  post({ type: "error", id: message?.id ?? null, name: "ProtocolError",
         message: `unknown message type ${stringifyJson(message?.type)}`, traceback: "" });
}
