/*
 * DCP sandbox: a module Web Worker that computes the slices of one job at a time.
 *
 *   new Worker(sandboxURL, { type: "module" })   // see sandbox-pool.js for the page side
 *
 * Protocol (postMessage objects; every request has an `id` and every reply echoes it):
 *
 *   page -> sandbox
 *     {type: "init", id, job: {id, language: "python"|"js", function, args}, pyodideURL,
 *      interruptBuffer?}
 *         Compiles the work function of `job` (once per job; slices reuse it). Python jobs load
 *         Pyodide from `pyodideURL` (the absolute URL of the vendor/pyodide/ folder) the first
 *         time; it then stays loaded for every later job. JS jobs never load Pyodide.
 *         `interruptBuffer` (a SharedArrayBuffer-backed Uint8Array or Int32Array, optional)
 *         becomes Pyodide's interrupt buffer: the page writes 2 (SIGINT) to raise
 *         KeyboardInterrupt in a running Python slice.
 *     {type: "slice", id, sliceNumber, datum}
 *         Calls work(datum, *job.args).
 *
 *   sandbox -> page
 *     {type: "ready", id, jobId, pyodideLoaded}                  init succeeded
 *     {type: "progress", id, sliceNumber, value}                 value: 0..1, or null (unknown)
 *     {type: "console", id, sliceNumber, level: "log"|"error", message}
 *                                                                sliceNumber is null during init
 *     {type: "result", id, sliceNumber, result}                  the slice's JSON-able result
 *     {type: "error", id, sliceNumber?, name, message, traceback, fatal?}
 *         The work function failed (Python: exception class name and formatted traceback;
 *         JS: error.name and error.stack), its result was not JSON-serialisable, it reported an
 *         invalid progress value, or init failed. `fatal: true` means the sandbox is unusable and
 *         should be terminated.
 *
 * Work functions. Python: the source is executed once per job in a fresh namespace; the work
 * function is the top-level callable named `work` if there is one, otherwise the last top-level
 * `def` / `async def` in the source. JS: the source is a function expression or declaration
 * (`function (x) {...}`, `async (x) => ...`), or statements that define a function named `work`.
 * Both may be async. `progress(value)` is a global in both languages (and `from dcp import
 * progress` in Python); it takes a number from 0 to 1, a percentage string such as "50%", or
 * nothing (indeterminate). A value out of range or unparsable fails the slice, even if the work
 * function catches the exception. `undefined` returned by a JS work function becomes null.
 *
 * Security. Before any work function runs, every network and storage entry point of the worker
 * scope (fetch, XMLHttpRequest, WebSocket, EventSource, WebTransport, importScripts, nested
 * workers, BroadcastChannel, indexedDB, caches, postMessage to the page) is replaced by a stub
 * that throws "network access is not allowed in a sandbox"; that includes Python's `js.fetch`
 * and `pyodide.http`. The real fetch is kept privately and used only to load Pyodide's own
 * runtime files. As the second layer the portal serves this file with a Content-Security-Policy
 * that limits script and connect sources to the Pyodide vendor folder. The exact header the
 * tests use (tests/sandbox/test_sandbox.py), with ORIGIN the portal origin and VENDOR the path
 * of vendor/pyodide/ (a CSP path needs a host, so the server writes in its own origin):
 *
 *   Content-Security-Policy: default-src 'none';
 *       script-src ORIGIN/VENDOR/ 'wasm-unsafe-eval' 'unsafe-eval'; connect-src ORIGIN/VENDOR/
 *
 * e.g. script-src http://127.0.0.1:8000/static/worker/vendor/pyodide/ .... script-src admits
 * the import() of pyodide.mjs and pyodide.asm.mjs; connect-src the fetches of the wasm, the
 * standard library zip and the lock file; 'wasm-unsafe-eval' lets Pyodide compile its wasm
 * (enough for Python jobs); 'unsafe-eval' is needed only to compile JS work functions (new
 * Function). default-src 'none' also forbids nested workers and every other load, and import()
 * of any other URL (blob: and data: included) is refused.
 *
 * Known limit: a sandbox stays warm across jobs, so code of one job can leave state (Python
 * modules, JS globals) that a later job in the same sandbox sees.
 */

const NETWORK_BLOCKED_MESSAGE = "network access is not allowed in a sandbox";
const PROGRESS_BURST = 20; // progress messages sent at once before throttling starts
const PROGRESS_INTERVAL_MS = 50; // then at most one progress message per interval
const MAX_CONSOLE_MESSAGES = 1000; // per slice (or per init)
const MAX_CONSOLE_MESSAGE_CHARS = 10_000;
const PYODIDE_FETCHED_FILES = ["pyodide.asm.wasm", "python_stdlib.zip", "pyodide-lock.json"];
const WORK_FILENAME = "<work function>";
const RUNTIME_FILENAME = "<dcp sandbox>";

// Captured before lockdown: only this module can reach them, work functions cannot.
const realFetch = globalThis.fetch.bind(globalThis);
const postToPage = globalThis.postMessage.bind(globalThis);
const { parse: parseJson, stringify: stringifyJson } = JSON;
const realConsole = globalThis.console;

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

let activeRequest = null; // the init or slice being handled: {id, sliceNumber, ...counters}

function newRequestState(id, sliceNumber) {
  return {
    id,
    sliceNumber,
    consoleCount: 0,
    progressTokens: PROGRESS_BURST,
    progressCheckedAt: performance.now(),
    pendingProgress: undefined, // {value} held back by the throttle
    progressProblem: null, // the first invalid progress() call, fails the slice
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
      post({ type: "console", id: state.id, sliceNumber: state.sliceNumber, level: "error",
             message: `console output truncated after ${MAX_CONSOLE_MESSAGES} messages` });
    }
    return;
  }
  const text = String(message);
  const clipped = text.length > MAX_CONSOLE_MESSAGE_CHARS
    ? `${text.slice(0, MAX_CONSOLE_MESSAGE_CHARS)}… (${text.length} characters)`
    : text;
  post({ type: "console", id: state.id, sliceNumber: state.sliceNumber, level, message: clipped });
}

function describeForConsole(value) {
  if (typeof value === "string") return value;
  if (value instanceof Error) return value.stack || `${value.name}: ${value.message}`;
  try {
    const json = stringifyJson(value);
    if (json !== undefined) return json;
  } catch {
    // fall through to String()
  }
  return String(value);
}

function forwardConsole() {
  const levels = { log: "log", info: "log", debug: "log", trace: "log", warn: "error", error: "error" };
  for (const [method, level] of Object.entries(levels)) {
    console[method] = (...values) => sendConsole(level, values.map(describeForConsole).join(" "));
  }
}

forwardConsole();

// Errors thrown by work functions outside the slice's own call (timers, stray promises) must not
// reach the page as worker errors: the pool reads those as "the sandbox script failed to load".
self.addEventListener("error", (event) => {
  event.preventDefault();
  sendConsole("error", `uncaught ${describeForConsole(event.error ?? event.message)}`);
});
self.addEventListener("unhandledrejection", (event) => {
  event.preventDefault();
  sendConsole("error", `unhandled rejection: ${describeForConsole(event.reason)}`);
});

// ------------------------------------------------------------------------------ progress

/** Parses a progress() argument: {value} (0..1 or null) or {problem} (why it is invalid). */
function parseProgress(value) {
  if (value === undefined || value === null) return { value: null };
  if (value && typeof value.destroy === "function") {
    // A Python object that has no JS equivalent arrives as a PyProxy: free it.
    const type = value.type;
    value.destroy();
    return { problem: `progress() takes a number from 0 to 1, a percentage such as '50%', or nothing; got ${type}` };
  }
  let number;
  if (typeof value === "number" || typeof value === "bigint") {
    number = Number(value);
  } else if (typeof value === "string") {
    const match = /^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)\s*(%?)\s*$/i.exec(value);
    if (!match) {
      return { problem: `progress() got ${stringifyJson(value)}, which is neither a number nor a percentage such as '50%'` };
    }
    number = Number(match[1]) / (match[2] ? 100 : 1);
  } else {
    return { problem: `progress() takes a number from 0 to 1, a percentage such as '50%', or nothing; got ${typeof value}` };
  }
  if (!(number >= 0 && number <= 1)) {
    return { problem: `progress must be between 0 and 1 (0% and 100%); got ${String(value)}` };
  }
  return { value: number };
}

function sendProgress(state, value) {
  post({ type: "progress", id: state.id, sliceNumber: state.sliceNumber, value });
}

/** Records one progress() call; returns undefined (None in Python), or what is wrong with it. */
function reportProgress(value) {
  const { value: parsed, problem } = parseProgress(value);
  const state = activeRequest;
  if (!state || state.sliceNumber === null) return problem; // a module-level call during init
  if (problem) {
    state.progressProblem ??= problem;
    return problem;
  }
  // Token bucket: short bursts go through at once, a flood is thinned to one per interval.
  const now = performance.now();
  state.progressTokens = Math.min(
    PROGRESS_BURST, state.progressTokens + (now - state.progressCheckedAt) / PROGRESS_INTERVAL_MS);
  state.progressCheckedAt = now;
  if (state.progressTokens >= 1) {
    state.progressTokens -= 1;
    state.pendingProgress = undefined;
    sendProgress(state, parsed);
  } else {
    state.pendingProgress = { value: parsed };
  }
  return undefined;
}

function progressForJs(value) {
  const problem = reportProgress(value);
  if (problem) throw new RangeError(problem);
}

replaceGlobal("progress", { value: progressForJs, writable: false });

// ------------------------------------------------------------------------------- Pyodide

// Python side of the sandbox, run once when Pyodide has loaded.
const PYTHON_RUNTIME = String.raw`
import ast
import inspect
import json
import linecache
import sys
import traceback
import types

from _dcp_sandbox import report_progress as _report_progress

WORK_FILENAME = ${stringifyJson(WORK_FILENAME)}
RUNTIME_FILENAME = ${stringifyJson(RUNTIME_FILENAME)}


def progress(value=None):
    """Report how far the slice has come: 0..1, a percentage such as '50%', or None (unknown)."""
    problem = _report_progress(value)
    if problem is not None:
        raise ValueError(problem)


_dcp = types.ModuleType("dcp", "What a work function can use inside a DCP sandbox.")
_dcp.progress = progress
sys.modules["dcp"] = _dcp


def _pick_work_function(tree, namespace):
    work = namespace.get("work")
    if callable(work):
        return work
    defined = [
        node.name
        for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    ]
    if defined and callable(namespace.get(defined[-1])):
        return namespace[defined[-1]]
    raise TypeError("the work function source defines no function: write def work(datum, *args)")


def _without_sandbox_frames(report):
    # The sandbox's own frames say nothing about the work function: drop them, chains included.
    while report is not None:
        kept = [frame for frame in report.stack if frame.filename != RUNTIME_FILENAME]
        report.stack = traceback.StackSummary.from_list(kept)
        report = report.__cause__ or report.__context__


def _error_reply(error):
    report = traceback.TracebackException.from_exception(error)
    _without_sandbox_frames(report)
    return json.dumps({
        "ok": False,
        "name": type(error).__name__,
        "message": str(error),
        "traceback": "".join(report.format()),
    })


def _result_reply(result, slice_number):
    try:
        encoded = json.dumps(result, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as error:
        raise TypeError(
            f"result of slice {slice_number} is not JSON-serialisable: {error}"
        ) from None
    return '{"ok": true, "result": ' + encoded + "}"


def _flush_output():
    sys.stdout.flush()
    sys.stderr.flush()


async def _finish_async(awaitable, slice_number):
    try:
        return _result_reply(await awaitable, slice_number)
    except BaseException as error:
        return _error_reply(error)
    finally:
        _flush_output()


def compile_work(source, args_json):
    """Executes the work function source; returns run(slice_number, datum_json) -> reply JSON,
    or the error reply JSON when the source does not compile or its module-level code fails."""
    try:
        return _compile_work(source, args_json)
    except BaseException as error:
        return _error_reply(error)


def _compile_work(source, args_json):
    tree = ast.parse(source, WORK_FILENAME)
    linecache.cache[WORK_FILENAME] = (len(source), None, source.splitlines(True), WORK_FILENAME)
    namespace = {"__name__": "__work__", "progress": progress}
    try:
        exec(compile(tree, WORK_FILENAME, "exec"), namespace)
    finally:
        _flush_output()
    work = _pick_work_function(tree, namespace)
    args = json.loads(args_json)

    def run(slice_number, datum_json):
        try:
            result = work(json.loads(datum_json), *args)
            if inspect.isawaitable(result):
                return _finish_async(result, slice_number)
            return _result_reply(result, slice_number)
        except BaseException as error:
            return _error_reply(error)
        finally:
            _flush_output()

    return run

`;

let pyodidePromise = null; // resolves to {pyodide, compileWork}
let interruptBuffer = null;

function loadPyodideOnce(pyodideURL) {
  pyodidePromise ??= loadPythonRuntime(pyodideURL).catch((error) => {
    pyodidePromise = null; // a later init may retry
    throw error;
  });
  return pyodidePromise;
}

async function loadPythonRuntime(pyodideURL) {
  const indexURL = new URL(pyodideURL.endsWith("/") ? pyodideURL : `${pyodideURL}/`, location.href).href;
  pyodideLoading = { indexURL };
  let pyodide;
  try {
    const { loadPyodide } = await import(new URL("pyodide.mjs", indexURL).href);
    pyodide = await loadPyodide({ indexURL, checkAPIVersion: true });
  } finally {
    pyodideLoading = null;
  }
  pyodide.setStdout({ batched: (line) => sendConsole("log", line) });
  pyodide.setStderr({ batched: (line) => sendConsole("error", line) });
  pyodide.setStdin({ error: true });
  if (interruptBuffer) pyodide.setInterruptBuffer(interruptBuffer);
  pyodide.registerJsModule("_dcp_sandbox", { report_progress: reportProgress });
  const namespace = pyodide.globals.get("dict")();
  try {
    pyodide.runPython(PYTHON_RUNTIME, { globals: namespace, filename: RUNTIME_FILENAME });
    return { pyodide, compileWork: namespace.get("compile_work") };
  } finally {
    namespace.destroy();
  }
}

// ---------------------------------------------------------------------------------- jobs

let currentJob = null; // {id, language, run(sliceNumber, datum) -> reply, dispose()}

function compileJsWorkFunction(source) {
  // new Function bodies run in the global scope: work code cannot see this module's variables.
  let work;
  try {
    work = new Function(`"use strict";\nreturn (${source}\n);`)();
  } catch (expressionError) {
    if (!(expressionError instanceof SyntaxError)) throw expressionError;
    try {
      work = new Function(`${source}\n;return typeof work === "function" ? work : undefined;`)();
    } catch (statementsError) {
      throw statementsError instanceof SyntaxError ? expressionError : statementsError;
    }
  }
  if (typeof work !== "function") {
    throw new TypeError("the work function source is not a function: write function (datum, ...args) { ... }");
  }
  return work;
}

function jsErrorReply(error) {
  if (error instanceof Error || (error && typeof error === "object" && "message" in error)) {
    return { ok: false, name: String(error.name ?? "Error"), message: String(error.message),
             traceback: String(error.stack ?? "") };
  }
  return { ok: false, name: "Error", message: describeForConsole(error), traceback: "" };
}

function jsResultReply(result, sliceNumber) {
  let encoded;
  try {
    encoded = stringifyJson(result === undefined ? null : result);
  } catch (error) {
    encoded = error;
  }
  if (typeof encoded !== "string") {
    const why = encoded instanceof Error ? encoded.message : `a ${typeof result} has no JSON form`;
    return jsErrorReply(new TypeError(`result of slice ${sliceNumber} is not JSON-serialisable: ${why}`));
  }
  // Parse back so the page receives exactly what JSON carries (no functions, NaN becomes null).
  return { ok: true, result: parseJson(encoded) };
}

function jsJob(job) {
  const work = compileJsWorkFunction(job.function);
  const args = job.args ?? [];
  return {
    id: job.id,
    language: "js",
    async run(sliceNumber, datum) {
      try {
        return jsResultReply(await work(datum, ...args), sliceNumber);
      } catch (error) {
        return jsErrorReply(error);
      }
    },
    dispose() {},
  };
}

/** Reply for a JS-level failure of the Python runtime itself: the sandbox is then unusable. */
function fatalPythonReply(error) {
  return { ...jsErrorReply(error), name: error?.type ?? error?.name ?? "Error", fatal: true };
}

async function pythonJob(job, pyodideURL) {
  const runtime = await loadPyodideOnce(pyodideURL);
  const run = runtime.compileWork(job.function, encodeJson(job.args ?? [], "the job's arguments"));
  if (typeof run === "string") {
    const { name, message, traceback } = parseJson(run); // the source failed to compile or run
    throw Object.assign(new Error(message), { name, traceback });
  }
  return {
    id: job.id,
    language: "python",
    async run(sliceNumber, datum) {
      let reply;
      try {
        reply = run(sliceNumber, encodeJson(datum, `the datum of slice ${sliceNumber}`));
        if (typeof reply !== "string") {
          const awaitable = reply; // a PyProxy of the work function's coroutine
          try {
            reply = await awaitable;
          } finally {
            destroyProxy(awaitable);
          }
        }
      } catch (error) {
        // run() catches every Python exception, so this is the runtime itself failing.
        return fatalPythonReply(error);
      }
      return parseJson(reply);
    },
    dispose() {
      destroyProxy(run);
    },
  };
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

// ------------------------------------------------------------------------------ requests

function checkJob(job) {
  if (!job || typeof job !== "object") throw new TypeError("init needs a job object");
  if (typeof job.function !== "string") throw new TypeError("job.function must be source text");
  if (!["python", "js", undefined].includes(job.language)) {
    throw new TypeError(`job.language must be "python" or "js", not ${stringifyJson(job.language)}`);
  }
  if (job.args !== undefined && !Array.isArray(job.args)) throw new TypeError("job.args must be a list");
}

async function handleInit({ id, job, pyodideURL, interruptBuffer: buffer }) {
  activeRequest = newRequestState(id, null);
  try {
    checkJob(job);
    if (buffer && buffer !== interruptBuffer) {
      interruptBuffer = buffer;
      if (pyodidePromise) (await pyodidePromise).pyodide.setInterruptBuffer(buffer);
    }
    currentJob?.dispose();
    currentJob = null;
    currentJob = job.language === "js" ? jsJob(job) : await pythonJob(job, pyodideURL);
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

async function handleSlice({ id, sliceNumber, datum }) {
  if (!currentJob) {
    post({ type: "error", id, sliceNumber, name: "ProtocolError",
           message: "no work function compiled: send init first", traceback: "" });
    return;
  }
  const state = newRequestState(id, sliceNumber);
  activeRequest = state;
  if (interruptBuffer) Atomics.store(interruptBuffer, 0, 0); // forget a late interrupt
  let reply;
  try {
    reply = await currentJob.run(sliceNumber, datum);
  } catch (error) {
    reply = jsErrorReply(error);
  } finally {
    activeRequest = null;
  }
  if (state.pendingProgress) sendProgress(state, state.pendingProgress.value);
  if (reply.ok && state.progressProblem) {
    reply = { ok: false, name: currentJob.language === "js" ? "RangeError" : "ValueError",
              message: state.progressProblem, traceback: "" };
  }
  if (reply.ok) {
    post({ type: "result", id, sliceNumber, result: reply.result });
  } else {
    const { ok: _ok, ...error } = reply;
    post({ type: "error", id, sliceNumber, ...error });
  }
}

async function handle(message) {
  switch (message?.type) {
    case "init":
      return handleInit(message);
    case "slice":
      return handleSlice(message);
    default:
      post({ type: "error", id: message?.id ?? null, name: "ProtocolError",
             message: `unknown message type ${stringifyJson(message?.type)}`, traceback: "" });
  }
}

// One request at a time, in arrival order: a slice never overlaps the init before it.
let queue = Promise.resolve();
self.addEventListener("message", (event) => {
  queue = queue.then(() => handle(event.data)).catch((error) => {
    realConsole.error("sandbox internal error", error);
  });
});
