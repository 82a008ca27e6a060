/*
 * The page side of the sandboxes: a pool of module Web Workers running sandbox.js.
 *
 *   import { SandboxPool, SliceError } from "./sandbox-pool.js";
 *   const pool = new SandboxPool({ size: 2, sandboxURL, pyodideURL });
 *   try {
 *     const { value } = await pool.run(job, slice, datum, { onProgress, onConsole, timeoutMs });
 *   } catch (error) {
 *     // error is a SliceError: {name, message, traceback, jobId, slice}
 *   }
 *
 * `job` is {id, language: "python"|"js", source: "<source>", args: [...]}. run() resolves to
 * {result} and rejects with a SliceError whose `name` is the work function's exception class
 * (ZeroDivisionError, TypeError for a result that is not JSON-serialisable, ValueError for a bad
 * progress value, ...) or one of the pool's own:
 *
 *   NoProgress      the slice reported no progress for timeoutMs; its sandbox was interrupted
 *                   (Python, when the page is cross-origin isolated) or terminated and replaced
 *   Aborted         abortJob() was called for the job
 *   Terminated      terminate() was called
 *   InitTimeout     loading Pyodide or compiling the work function took longer than initTimeoutMs
 *   SandboxCrashed  the sandbox worker died or failed to start
 *
 * onProgress(value) gets 0..1 or null (indeterminate); onConsole({level, message, slice})
 * gets print()/console output, with slice null for output of the work function's
 * module-level code. A slice prefers an idle sandbox that already has its job compiled, then one
 * with Pyodide loaded (for Python jobs), then any idle one; sandboxes start lazily, up to size.
 */

import { callQuietly } from "./util.js";

const DEFAULT_TIMEOUT_MS = 60_000;
const DEFAULT_INIT_TIMEOUT_MS = 120_000;
const DEFAULT_INTERRUPT_GRACE_MS = 2_000;
const SIGINT = 2;
const FINAL_REPLIES = new Set(["ready", "result", "error"]);

// What the pool needs to know of each work-function runtime; a job of another language is
// treated as Python. Pyodide-backed runtimes prefer a sandbox with Pyodide already loaded, and
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

function newInterruptBuffer() {
  // SharedArrayBuffer exists only where the page is cross-origin isolated (COOP + COEP).
  if (!globalThis.crossOriginIsolated || typeof SharedArrayBuffer !== "function") return null;
  return new Uint8Array(new SharedArrayBuffer(1));
}

/** One module Worker running sandbox.js, with its pending requests by id. */
class Sandbox {
  static #count = 0;

  constructor(sandboxURL, onCrash) {
    Sandbox.#count += 1;
    this.number = Sandbox.#count;
    this.worker = new Worker(sandboxURL, { type: "module", name: `dcp-sandbox-${this.number}` });
    this.interruptBuffer = newInterruptBuffer();
    this.jobId = null; // the job whose work function is compiled in this sandbox
    this.hasPyodide = false;
    this.task = null; // the slice running here
    this.retiring = false; // terminate once the running slice ends (the pool shrank)
    this.dead = false;
    this.pending = new Map(); // request id -> {message(reply), crash(error)}
    this.nextId = 0;
    this.worker.addEventListener("message", (event) => this.#receive(event.data));
    // sandbox.js handles work functions' own errors, so an error here means the sandbox died.
    this.worker.addEventListener("error", (event) => {
      onCrash(this, `sandbox ${this.number} failed: ${event.message || "the worker script did not load"}`);
    });
    this.worker.addEventListener("messageerror", () => {
      onCrash(this, `sandbox ${this.number} sent a message that could not be read`);
    });
  }

  request(message, handler) {
    this.nextId += 1;
    this.pending.set(this.nextId, handler);
    this.worker.postMessage({ ...message, id: this.nextId });
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
    this.worker.terminate();
    const handlers = [...this.pending.values()];
    this.pending.clear();
    for (const handler of handlers) handler.crash(error);
  }

  #receive(message) {
    const handler = message && typeof message === "object" ? this.pending.get(message.id) : null;
    if (!handler) return; // a late reply for a request already given up on
    if (FINAL_REPLIES.has(message.type)) this.pending.delete(message.id);
    handler.message(message);
  }
}

export class SandboxPool {
  #sandboxes = [];
  #queue = []; // tasks waiting for an idle sandbox
  #size;
  #closed = false;

  /**
   * @param {object} options
   * @param {number} [options.size] how many sandboxes may run at once (default: cores - 1)
   * @param {string} options.sandboxURL absolute URL of sandbox.js
   * @param {string} options.pyodideURL absolute URL of the vendor/pyodide/ folder
   * @param {number} [options.timeoutMs] default no-progress limit of a slice (0: none)
   * @param {number} [options.initTimeoutMs] limit for loading Pyodide and compiling a job
   * @param {number} [options.interruptGraceMs] how long an interrupted Python slice may take to stop
   */
  constructor({
    size = defaultSize(),
    sandboxURL,
    pyodideURL,
    timeoutMs = DEFAULT_TIMEOUT_MS,
    initTimeoutMs = DEFAULT_INIT_TIMEOUT_MS,
    interruptGraceMs = DEFAULT_INTERRUPT_GRACE_MS,
  }) {
    if (!sandboxURL || !pyodideURL) throw new TypeError("SandboxPool needs sandboxURL and pyodideURL");
    this.sandboxURL = sandboxURL;
    this.pyodideURL = pyodideURL;
    this.timeoutMs = timeoutMs;
    this.initTimeoutMs = initTimeoutMs;
    this.interruptGraceMs = interruptGraceMs;
    this.#size = Math.max(1, size);
  }

  get size() {
    return this.#size;
  }

  /** What each live sandbox holds, for status displays and tests. */
  stats() {
    return this.#sandboxes.map((sandbox) => ({
      number: sandbox.number,
      jobId: sandbox.jobId,
      hasPyodide: sandbox.hasPyodide,
      busy: sandbox.task !== null,
      interruptible: sandbox.interruptBuffer !== null,
    }));
  }

  /** Computes one slice; resolves to {result}, rejects with a SliceError. */
  run(job, slice, datum, { onProgress, onConsole, timeoutMs } = {}) {
    return new Promise((resolve, reject) => {
      if (!job || job.id === undefined || typeof job.source !== "string") {
        reject(new TypeError("a job needs an id and the work function's source in job.source"));
        return;
      }
      if (this.#closed) {
        reject(new SliceError({ name: "Terminated", message: "the sandbox pool was terminated",
                                jobId: job?.id ?? null, slice }));
        return;
      }
      const task = { job, slice, datum, onProgress, onConsole, timeoutMs, settled: false };
      task.resolve = (value) => { if (!task.settled) { task.settled = true; resolve(value); } };
      task.reject = (error) => { if (!task.settled) { task.settled = true; reject(error); } };
      this.#queue.push(task);
      this.#dispatch();
    });
  }

  /** Fails every slice of the job, queued or running; running ones lose their sandbox. */
  abortJob(jobId, message = `job ${jobId} was aborted`) {
    for (const task of this.#queue.filter((queued) => queued.job.id === jobId)) {
      task.reject(sliceError("Aborted", task, message));
    }
    this.#queue = this.#queue.filter((queued) => queued.job.id !== jobId);
    for (const sandbox of this.#sandboxes.filter((live) => live.task?.job.id === jobId)) {
      this.#discard(sandbox, sliceError("Aborted", sandbox.task, message));
    }
    this.#dispatch();
  }

  /** Changes how many sandboxes may run; busy ones beyond the new size stop after their slice. */
  resize(size) {
    this.#size = Math.max(1, size);
    const staying = this.#sandboxes.filter((sandbox) => !sandbox.retiring);
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
    const error = (task) => sliceError("Terminated", task, "the sandbox pool was terminated");
    for (const task of this.#queue) task.reject(error(task));
    this.#queue = [];
    for (const sandbox of [...this.#sandboxes]) {
      this.#discard(sandbox, sandbox.task ? error(sandbox.task) : null);
    }
  }

  #dispatch() {
    while (this.#queue.length > 0 && !this.#closed) {
      const task = this.#queue[0];
      const sandbox = this.#idleSandboxFor(task.job) ?? this.#startSandbox();
      if (!sandbox) return;
      this.#queue.shift();
      this.#runOn(sandbox, task);
    }
  }

  #idleSandboxFor(job) {
    const idle = this.#sandboxes.filter((sandbox) => !sandbox.task && !sandbox.retiring);
    return (
      idle.find((sandbox) => sandbox.jobId === job.id) ??
      (runtimeOf(job).usesPyodide ? idle.find((sandbox) => sandbox.hasPyodide) : null) ??
      idle[0] ??
      null
    );
  }

  #startSandbox() {
    if (this.#sandboxes.filter((sandbox) => !sandbox.retiring).length >= this.#size) return null;
    const sandbox = new Sandbox(this.sandboxURL, (crashed, message) => {
      const task = crashed.task;
      this.#discard(crashed, new SliceError({ name: "SandboxCrashed", message,
                                               jobId: task?.job.id ?? null, slice: task?.slice ?? null }));
      this.#dispatch();
    });
    this.#sandboxes.push(sandbox);
    return sandbox;
  }

  /** Terminates and forgets a sandbox; its running slice, if any, fails with `error`. */
  #discard(sandbox, error) {
    this.#sandboxes = this.#sandboxes.filter((live) => live !== sandbox);
    if (sandbox.task && error) sandbox.task.reject(error);
    sandbox.kill(error ?? new SliceError({ name: "Terminated", message: "sandbox stopped" }));
  }

  async #runOn(sandbox, task) {
    sandbox.task = task;
    try {
      if (sandbox.jobId !== task.job.id) await this.#compile(sandbox, task);
      task.resolve(await this.#computeSlice(sandbox, task));
    } catch (error) {
      task.reject(error);
    } finally {
      sandbox.task = null;
      if (sandbox.retiring) this.#discard(sandbox, null);
      this.#dispatch();
    }
  }

  #compile(sandbox, task) {
    sandbox.jobId = null;
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
        ["ready", (reply) => settle(() => {
          sandbox.jobId = task.job.id;
          sandbox.hasPyodide = Boolean(reply.pyodideLoaded);
          resolve();
        })],
        ["error", (reply) => settle(() => reject(new SliceError({ ...reply, jobId: task.job.id, slice: task.slice })))],
      ]);
      const { id, language = "python", source, args = [] } = task.job;
      sandbox.request(
        { type: "init", job: { id, language, source, args }, pyodideURL: this.pyodideURL,
          interruptBuffer: sandbox.interruptBuffer },
        {
          message: (reply) => (replies.get(reply.type) ?? replies.get("error"))(reply),
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
          else resolve({ value: reply.value });
        })],
        ["error", (reply) => settle(() => {
          if (reply.fatal) this.#discard(sandbox, null);
          reject(silence.interrupted ? noProgress() : new SliceError({ ...reply, jobId: task.job.id }));
        })],
      ]);
      silence.restart();
      sandbox.request({ type: "slice", slice: task.slice, datum: task.datum }, {
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
