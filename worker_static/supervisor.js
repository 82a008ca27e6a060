/*
 * DCP supervisor: the page side of a worker. One websocket to the scheduler, one SandboxPool.
 *
 *   import { Supervisor } from "/worker/supervisor.js";
 *   const supervisor = new Supervisor({
 *     socketURL: "wss://portal.example/ws/worker/",
 *     sandboxURL: "https://portal.example/worker/sandbox.js",
 *     pyodideURL: "https://portal.example/worker/vendor/pyodide/",
 *     cores: 3,
 *     onState: (state, detail) => {},  // see STATES below
 *     onStats: ({ slicesComputed, creditsEarned, inFlight, state }) => {},
 *     log: (message, level) => {},     // level: "info" | "warn" | "error"
 *   });
 *   supervisor.start();  supervisor.setCores(2);  supervisor.stop();
 *
 * It speaks the worker side of docs/protocol.md ("Worker socket"): hello, then ready {capacity}
 * whenever it has free cores; it runs each task's slices on the pool, at most `cores` at once
 * (the rest wait in a local queue, which counts against the capacity it announces); it sends
 * progress (every ~2 s, for slices that reported progress: extends their leases), console
 * (at most ~20 lines a second, the rest summed up in one "… N lines dropped" line per job) and
 * result batches (one message per job, when a task's slices are all done or 250 ms after the
 * batch's first entry), and re-announces its capacity after each batch. stop() hands unfinished
 * slices back with `return`; a lost connection drops them (the scheduler requeues them) and
 * reconnects with exponential backoff and jitter.
 *
 * Background tabs: nothing here waits on requestAnimationFrame. Timers of a hidden tab are
 * throttled (to once a second, or less), so every deadline is also checked whenever a sandbox
 * or the socket reports something, and the work itself runs in the sandboxes' Web Workers.
 */

import { SandboxPool } from "./sandbox-pool.js";

export const PROTOCOL_VERSION = 1;

/** States passed to onState(state, detail); detail is described next to each. */
export const STATES = Object.freeze({
  STOPPED: "stopped", // {}
  CONNECTING: "connecting", // {}
  WAITING: "waiting", // {}: connected, no slice held ("Waiting for work")
  COMPUTING: "computing", // {slices, jobs: [job id, ...]}
  RECONNECTING: "reconnecting", // {retryInMs, retryAt (Date.now() based), code}
  ERROR: "error", // {message}: the supervisor stopped itself (e.g. signed out)
});

const RESULT_BATCH_MS = 250;
const PROGRESS_INTERVAL_MS = 2_000;
const TICK_MS = 250;
const CONSOLE_LINES_PER_SECOND = 20;
const RECONNECT_FIRST_MS = 500;
const RECONNECT_MAX_MS = 15_000;
const ACK_GRACE_MS = 1_000; // stop(): how long the closing socket waits for outstanding acks
const MAX_FRAME_BYTES = 4 * 1024 * 1024; // the scheduler closes the socket on larger frames
const FRAME_BYTES_BUDGET = MAX_FRAME_BYTES - 64 * 1024;
// Field limits of the scheduler's message schemas (portal/scheduler/schemas.py).
const MAX_MESSAGE_CHARS = 10_000; // console lines and error messages
const MAX_TRACEBACK_CHARS = 100_000;

// Close codes after which reconnecting cannot help: the person has to act first.
const FATAL_CLOSE_CODES = new Map([
  [4401, "Not signed in: sign in again, then press Start"],
  [4403, "This page's origin is not allowed to connect to the scheduler"],
]);

// Slice errors that are the supervisor's own decisions, not failures of the slice.
const LOCAL_SLICE_ERRORS = new Set(["Aborted", "Terminated"]);

// ---------------------------------------------------------------------------------- credits

const CREDIT_DECIMALS = 9;
const CREDIT_SCALE = 10n ** BigInt(CREDIT_DECIMALS);

/** Parses a decimal credit amount ("0.004") into base units of 10⁻⁹ credit (a BigInt). */
export function parseCredits(amount) {
  const match = /^\s*([+-]?)(\d*)(?:\.(\d*))?\s*$/.exec(String(amount ?? ""));
  if (!match || (match[2] === "" && !match[3])) throw new RangeError(`not a credit amount: ${amount}`);
  const [, sign, whole, fraction = ""] = match;
  if (fraction.replace(/0+$/, "").length > CREDIT_DECIMALS) {
    throw new RangeError(`a credit amount has at most ${CREDIT_DECIMALS} decimals: ${amount}`);
  }
  const units = BigInt(whole || "0") * CREDIT_SCALE
    + BigInt(fraction.slice(0, CREDIT_DECIMALS).padEnd(CREDIT_DECIMALS, "0"));
  return sign === "-" ? -units : units;
}

/** Formats base units as a decimal string without trailing zeros ("0.05", "3"). */
export function formatCredits(units) {
  const negative = units < 0n;
  const magnitude = negative ? -units : units;
  const fraction = (magnitude % CREDIT_SCALE).toString().padStart(CREDIT_DECIMALS, "0").replace(/0+$/, "");
  return `${negative ? "-" : ""}${magnitude / CREDIT_SCALE}${fraction ? `.${fraction}` : ""}`;
}

/** Exact sum of decimal credit amounts, as a decimal string. */
export function addCredits(...amounts) {
  return formatCredits(amounts.reduce((sum, amount) => sum + parseCredits(amount), 0n));
}

// ------------------------------------------------------------------------------- helpers

function callQuietly(callback, ...values) {
  if (!callback) return;
  try {
    callback(...values);
  } catch (error) {
    console.error("supervisor callback failed", error);
  }
}

function sliceKey(jobId, sliceNumber) {
  return `${jobId}\u0000${sliceNumber}`;
}

const utf8 = new TextEncoder();

function fitsInFrame(text) {
  // UTF-8 takes at most 3 bytes per UTF-16 unit: encode only when that bound is too high.
  return text.length * 3 <= FRAME_BYTES_BUDGET || utf8.encode(text).length <= FRAME_BYTES_BUDGET;
}

function clip(text, limit) {
  return text.length <= limit ? text : `${text.slice(0, limit - 1)}…`;
}

function plural(count, word) {
  return `${count} ${word}${count === 1 ? "" : "s"}`;
}

// ---------------------------------------------------------------------------- supervisor

export class Supervisor {
  #socketURL;
  #sandboxURL;
  #pyodideURL;
  #cores;
  #onState;
  #onStats;
  #log;
  #WebSocket;
  #pool;

  #running = false; // between start() and stop() (or a fatal close)
  #socket = null; // the live connection
  #welcomed = false;
  #state = STATES.STOPPED;
  #stateKey = "";
  #reconnectAttempt = 0;
  #reconnectTimer = null;
  #tickTimer = null;
  #nextRequestId = 0;
  #releaseLock = null;

  #held = new Map(); // sliceKey -> slice record (queued or computing): every slice we hold
  #queue = []; // slice records waiting for a free core
  #computing = 0; // slice records handed to the pool
  #batches = new Map(); // job id -> {results, errors, since}: finished, not yet sent
  #progressed = new Map(); // job id -> Set of slice numbers that reported progress
  #lastProgressSentAt = 0;
  #pendingAcks = new Map(); // request id -> {socket, job, count}
  #consoleWindow = { startedAt: 0, sent: 0, dropped: new Map() }; // job id -> {count, slice}
  #slicesComputed = 0;
  #creditUnits = 0n;

  /**
   * @param {object} options
   * @param {string} options.socketURL ws(s)://host/ws/worker/
   * @param {string} options.sandboxURL absolute URL of sandbox.js
   * @param {string} options.pyodideURL absolute URL of the vendor/pyodide/ folder
   * @param {number} [options.cores] slices computed at once (default: hardware threads - 1)
   * @param {function} [options.onState] (state, detail) on every change of state
   * @param {function} [options.onStats] ({slicesComputed, creditsEarned, inFlight, state})
   * @param {function} [options.log] (message, level) for a person-readable event log
   * @param {object} [options.pool] a SandboxPool to use instead of a new one (tests)
   * @param {function} [options.WebSocket] the WebSocket class to use (tests)
   */
  constructor({
    socketURL,
    sandboxURL,
    pyodideURL,
    cores = Math.max(1, (globalThis.navigator?.hardwareConcurrency ?? 2) - 1),
    onState,
    onStats,
    log,
    pool = null,
    WebSocket: WebSocketClass = globalThis.WebSocket,
  }) {
    if (!socketURL) throw new TypeError("Supervisor needs socketURL");
    if (!pool && (!sandboxURL || !pyodideURL)) throw new TypeError("Supervisor needs sandboxURL and pyodideURL");
    this.#socketURL = socketURL;
    this.#sandboxURL = sandboxURL;
    this.#pyodideURL = pyodideURL;
    this.#cores = Math.max(1, Math.floor(Number(cores) || 1));
    this.#onState = onState;
    this.#onStats = onStats;
    this.#log = log;
    this.#pool = pool;
    this.#WebSocket = WebSocketClass;
  }

  get state() {
    return this.#state;
  }

  get cores() {
    return this.#cores;
  }

  /** What onStats last reported (or would report now). */
  get stats() {
    return {
      slicesComputed: this.#slicesComputed,
      creditsEarned: formatCredits(this.#creditUnits),
      inFlight: this.#held.size,
      state: this.#state,
    };
  }

  /** Connects to the scheduler and starts asking for work. Does nothing while started. */
  start() {
    if (this.#running) return;
    this.#running = true;
    if (this.#pool) this.#pool.resize(this.#cores);
    else this.#pool = new SandboxPool({ size: this.#cores, sandboxURL: this.#sandboxURL, pyodideURL: this.#pyodideURL });
    this.#holdLock();
    this.#reconnectAttempt = 0;
    this.#connect();
  }

  /** Hands every unfinished slice back (`return`), aborts them in the pool, closes the socket. */
  stop() {
    if (!this.#running) return;
    this.#running = false;
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = null;
    const socket = this.#socket;
    let returned = 0;
    if (this.#isOpen(socket)) {
      this.#flushAllBatches(); // finished slices are worth sending: the scheduler pays for them
      for (const [jobId, records] of this.#heldByJob()) {
        this.#send({ type: "return", job: jobId, slices: records.map((record) => record.slice) });
        returned += records.length;
      }
    }
    this.#detachSocket();
    this.#dropAll("the worker was stopped");
    if (socket) this.#closeWhenAcked(socket);
    this.#releaseHeldLock();
    this.#log_(returned ? `Stopped: handed ${plural(returned, "slice")} back` : "Stopped");
    this.#setState(STATES.STOPPED);
  }

  /** Changes how many slices run at once; announces the new capacity when connected. */
  setCores(cores) {
    const count = Math.max(1, Math.floor(Number(cores) || 1));
    if (count === this.#cores) return;
    this.#cores = count;
    this.#pool?.resize(count);
    this.#pump();
    this.#announceReady();
    this.#emitStats();
  }

  // ------------------------------------------------------------------------ connection

  #connect() {
    this.#setState(STATES.CONNECTING);
    let socket;
    try {
      socket = new this.#WebSocket(this.#socketURL);
    } catch (error) {
      this.#log_(`Cannot open ${this.#socketURL}: ${error.message}`, "error");
      this.#scheduleReconnect(null);
      return;
    }
    this.#socket = socket;
    this.#welcomed = false;
    socket.addEventListener("open", () => this.#onOpen(socket));
    socket.addEventListener("message", (event) => this.#onMessage(socket, event));
    socket.addEventListener("close", (event) => this.#onClose(socket, event));
    // An "error" event is always followed by "close", which does the work.
  }

  #onOpen(socket) {
    if (socket !== this.#socket) return;
    this.#lastProgressSentAt = Date.now();
    this.#tickTimer = setInterval(() => this.#tick(), TICK_MS);
    this.#send({
      type: "hello",
      id: this.#requestId(),
      version: PROTOCOL_VERSION,
      cores: this.#cores,
      capabilities: { webgpu: Boolean(globalThis.navigator?.gpu) },
    });
  }

  #onClose(socket, event) {
    this.#forgetAcks(socket);
    if (socket !== this.#socket) return;
    this.#detachSocket();
    const lost = this.#dropAll("the connection to the scheduler was lost");
    if (!this.#running) return;
    const why = event.reason ? `${event.code} ${event.reason}` : `code ${event.code}`;
    const fatal = FATAL_CLOSE_CODES.get(event.code);
    if (fatal) {
      this.#running = false;
      this.#releaseHeldLock();
      this.#log_(`Disconnected (${why}): ${fatal}`, "error");
      this.#setState(STATES.ERROR, { message: fatal });
      return;
    }
    const dropped = lost ? `; dropped ${plural(lost, "slice")}, the scheduler requeues them` : "";
    this.#log_(`Disconnected (${why})${dropped}`, "warn");
    this.#scheduleReconnect(event.code);
  }

  #scheduleReconnect(code) {
    const ceiling = Math.min(RECONNECT_MAX_MS, RECONNECT_FIRST_MS * 2 ** this.#reconnectAttempt);
    const retryInMs = Math.round(ceiling / 2 + (Math.random() * ceiling) / 2); // "equal jitter"
    this.#reconnectAttempt += 1;
    this.#setState(STATES.RECONNECTING, { retryInMs, retryAt: Date.now() + retryInMs, code });
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = null;
      if (this.#running) this.#connect();
    }, retryInMs);
  }

  /** Forgets the live socket (its later events are ignored) and stops the timers. */
  #detachSocket() {
    this.#socket = null;
    this.#welcomed = false;
    clearInterval(this.#tickTimer);
    this.#tickTimer = null;
  }

  /** Closes a socket we no longer use once its result batches are acknowledged (or soon). */
  #closeWhenAcked(socket) {
    const close = () => {
      if (socket.readyState === this.#WebSocket.CLOSED || socket.readyState === this.#WebSocket.CLOSING) return;
      socket.close(1000, "worker stopped");
    };
    if (![...this.#pendingAcks.values()].some((pending) => pending.socket === socket)) {
      close();
      return;
    }
    const timer = setTimeout(close, ACK_GRACE_MS);
    socket.addEventListener("message", () => {
      if (![...this.#pendingAcks.values()].some((pending) => pending.socket === socket)) {
        clearTimeout(timer);
        close();
      }
    });
  }

  #isOpen(socket) {
    return Boolean(socket) && socket.readyState === this.#WebSocket.OPEN;
  }

  #requestId() {
    this.#nextRequestId += 1;
    return this.#nextRequestId;
  }

  #send(message) {
    if (!this.#isOpen(this.#socket)) return false;
    this.#socket.send(JSON.stringify(message));
    return true;
  }

  // -------------------------------------------------------------------------- messages

  #onMessage(socket, event) {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      this.#log_("The scheduler sent a frame that is not JSON", "warn");
      return;
    }
    if (message?.type === "ack") {
      this.#onAck(message); // acks of batches sent before stop() still count
      return;
    }
    if (socket !== this.#socket) return;
    switch (message?.type) {
      case "welcome":
        return this.#onWelcome(message);
      case "task":
        return this.#onTask(message);
      case "waiting":
        return this.#onWaiting();
      case "abort":
        return this.#onAbort(message);
      case "error":
        this.#pendingAcks.delete(message.id); // a refused result batch gets no ack
        return this.#log_(`The scheduler refused a message: ${message.code ?? "error"} ${message.message ?? ""}`.trim(), "warn");
      default:
        this.#log_(`Ignored a message of unknown type ${JSON.stringify(message?.type)}`, "warn");
    }
  }

  #onWelcome(message) {
    this.#welcomed = true;
    this.#reconnectAttempt = 0;
    const paid = message.address ? `; credits go to ${message.address}` : "";
    this.#log_(`Connected as worker ${message.worker ?? "?"}${paid}`);
    this.#updateWorkState();
    this.#announceReady();
  }

  #onWaiting() {
    if (this.#held.size === 0) this.#setState(STATES.WAITING);
  }

  #onTask(message) {
    const { task, job, slices, lease_seconds: leaseSeconds, progress_timeout: progressTimeout } = message;
    if (!job || job.id === undefined || !Array.isArray(slices)) {
      this.#log_(`Ignored a malformed task ${JSON.stringify(task ?? null)}`, "warn");
      return;
    }
    // The pool compiles a work function once per job id; it calls the source `function`.
    const poolJob = { id: job.id, language: job.language ?? "python", function: job.source, args: job.args ?? [] };
    // The job's progress timeout stops a stalled slice; the lease is only the server's backstop.
    const seconds = Number(progressTimeout) > 0 ? Number(progressTimeout) : Number(leaseSeconds);
    const timeoutMs = seconds > 0 ? seconds * 1000 : undefined;
    const taskRecord = { id: task, open: new Set() };
    for (const { slice, datum } of slices) {
      const key = sliceKey(job.id, slice);
      if (this.#held.has(key)) continue; // re-dispatched to us while we still compute it
      const record = { key, job: poolJob, slice, datum, task: taskRecord, timeoutMs, computing: false, dropped: false };
      taskRecord.open.add(record);
      this.#held.set(key, record);
      this.#queue.push(record);
    }
    this.#log_(`Task ${task}: ${plural(slices.length, "slice")} of job ${job.id}`);
    this.#pump();
    this.#updateWorkState();
  }

  #onAbort(message) {
    const jobId = message.job;
    const dropped = this.#dropWhere((record) => record.job.id === jobId);
    this.#pool?.abortJob(jobId, `job ${jobId} was cancelled`);
    this.#batches.delete(jobId);
    this.#progressed.delete(jobId);
    this.#log_(`Job ${jobId} was cancelled: dropped ${plural(dropped.length, "slice")}`, "warn");
    this.#pump();
    this.#announceReady();
    this.#updateWorkState();
  }

  #onAck(message) {
    const pending = this.#pendingAcks.get(message.id);
    this.#pendingAcks.delete(message.id);
    const accepted = Number(message.accepted) || 0;
    let earned = 0n;
    try {
      earned = parseCredits(message.earned ?? "0");
    } catch {
      this.#log_(`The scheduler acknowledged with an unreadable amount ${JSON.stringify(message.earned)}`, "warn");
    }
    this.#slicesComputed += accepted;
    this.#creditUnits += earned;
    const job = pending ? ` of job ${pending.job}` : "";
    this.#log_(`${plural(accepted, "result")}${job} accepted, earned ${formatCredits(earned)} credits`);
    this.#emitStats();
  }

  // ---------------------------------------------------------------------------- slices

  /** Hands queued slices to the pool while cores are free. */
  #pump() {
    if (!this.#pool) return;
    while (this.#computing < this.#cores && this.#queue.length > 0) {
      this.#compute(this.#queue.shift());
    }
  }

  #compute(record) {
    record.computing = true;
    record.startedAt = performance.now();
    this.#computing += 1;
    this.#pool
      .run(record.job, record.slice, record.datum, {
        timeoutMs: record.timeoutMs,
        onProgress: () => this.#onSliceProgress(record),
        onConsole: (line) => this.#onSliceConsole(record, line),
      })
      .then(
        ({ result }) => this.#onSliceDone(record, { value: result }),
        (error) => this.#onSliceDone(record, { error }),
      );
  }

  #onSliceProgress(record) {
    if (record.dropped) return;
    let slices = this.#progressed.get(record.job.id);
    if (!slices) this.#progressed.set(record.job.id, (slices = new Set()));
    slices.add(record.slice);
    this.#tick();
  }

  #onSliceDone(record, { value, error }) {
    if (record.dropped) return;
    const ms = Math.round(performance.now() - record.startedAt);
    this.#forget(record);
    const jobId = record.job.id;
    let capacityFreed = false;
    if (error && LOCAL_SLICE_ERRORS.has(error.name)) {
      // Not our decision (we mark slices dropped before aborting them): give it back at once.
      capacityFreed = this.#send({ type: "return", job: jobId, slices: [record.slice] });
    } else {
      const batch = this.#batchFor(jobId);
      if (error) {
        batch.errors.push({
          slice: record.slice,
          name: String(error.name ?? "Error").slice(0, 200),
          message: clip(String(error.message ?? ""), MAX_MESSAGE_CHARS),
          traceback: String(error.traceback ?? "").slice(-MAX_TRACEBACK_CHARS), // the end says most
        });
      } else {
        batch.results.push({ slice: record.slice, value, ms });
      }
      if (record.task.open.size === 0) capacityFreed = this.#flushBatch(jobId);
    }
    this.#pump();
    capacityFreed = this.#sendDue() || capacityFreed;
    if (capacityFreed) this.#announceReady();
    this.#updateWorkState();
  }

  /** Removes a record from every local structure; it will send nothing more. */
  #forget(record) {
    if (!record) return;
    if (this.#held.get(record.key) === record) this.#held.delete(record.key);
    record.task.open.delete(record);
    this.#progressed.get(record.job.id)?.delete(record.slice);
    if (record.computing) {
      record.computing = false;
      this.#computing -= 1;
    } else {
      const queued = this.#queue.indexOf(record);
      if (queued >= 0) this.#queue.splice(queued, 1);
    }
  }

  /** Drops held slices matching `predicate` (their outcome will be ignored); returns them. */
  #dropWhere(predicate) {
    const dropped = [...this.#held.values()].filter(predicate);
    for (const record of dropped) {
      record.dropped = true;
      this.#forget(record);
    }
    return dropped;
  }

  /** Drops every held slice and aborts them in the pool; unsent results go too. */
  #dropAll(why) {
    const dropped = this.#dropWhere(() => true);
    for (const jobId of new Set(dropped.map((record) => record.job.id))) this.#pool?.abortJob(jobId, why);
    this.#batches.clear();
    this.#progressed.clear();
    this.#consoleWindow.dropped.clear();
    this.#updateWorkState();
    return dropped.length;
  }

  #heldByJob() {
    const byJob = new Map();
    for (const record of this.#held.values()) {
      if (!byJob.has(record.job.id)) byJob.set(record.job.id, []);
      byJob.get(record.job.id).push(record);
    }
    return byJob;
  }

  // --------------------------------------------------------------------- batched sends

  /** Timer: sends what is due and announces capacity after results. */
  #tick() {
    if (this.#sendDue()) this.#announceReady();
  }

  /** Sends result batches older than RESULT_BATCH_MS, progress, console summaries; true if
   * any results went out. Called by the timer and on every sandbox event (timers of hidden
   * tabs are throttled). */
  #sendDue() {
    if (!this.#isOpen(this.#socket)) return false;
    const now = Date.now();
    let sent = false;
    for (const [jobId, batch] of [...this.#batches]) {
      if (now - batch.since >= RESULT_BATCH_MS) sent = this.#flushBatch(jobId) || sent;
    }
    if (now - this.#lastProgressSentAt >= PROGRESS_INTERVAL_MS) this.#flushProgress(now);
    this.#rollConsoleWindow(now);
    return sent;
  }

  #batchFor(jobId) {
    let batch = this.#batches.get(jobId);
    if (!batch) this.#batches.set(jobId, (batch = { results: [], errors: [], since: Date.now() }));
    return batch;
  }

  #flushAllBatches() {
    for (const jobId of [...this.#batches.keys()]) this.#flushBatch(jobId);
  }

  /** Sends one job's finished slices as `result` messages (split only to fit a frame). */
  #flushBatch(jobId) {
    const batch = this.#batches.get(jobId);
    this.#batches.delete(jobId);
    if (!batch || !this.#isOpen(this.#socket)) return false;
    this.#sendResults(jobId, batch.results, batch.errors);
    return true;
  }

  #sendResults(jobId, results, errors) {
    const entries = results.length + errors.length;
    const id = this.#requestId();
    const text = JSON.stringify({ type: "result", id, job: jobId, results, errors });
    if (!fitsInFrame(text)) {
      if (entries > 1) {
        const resultsHalf = Math.ceil(results.length / 2);
        const errorsHalf = Math.floor(errors.length / 2);
        this.#sendResults(jobId, results.slice(0, resultsHalf), errors.slice(0, errorsHalf));
        this.#sendResults(jobId, results.slice(resultsHalf), errors.slice(errorsHalf));
        return;
      }
      if (results.length === 1) {
        const { slice } = results[0];
        this.#sendResults(jobId, [], [{ slice, name: "ResultTooLarge", traceback: "",
          message: `the result of slice ${slice} does not fit in a ${MAX_FRAME_BYTES}-byte frame` }]);
        return;
      }
      // A single error is clipped to the schema's limits, which always fit in a frame.
    }
    this.#socket.send(text);
    this.#pendingAcks.set(id, { socket: this.#socket, job: jobId, count: entries });
    const failed = errors.length ? ` (${errors.length} failed)` : "";
    this.#log_(`Sent ${plural(entries, "result")} of job ${jobId}${failed}`);
  }

  #forgetAcks(socket) {
    for (const [id, pending] of this.#pendingAcks) {
      if (pending.socket === socket) this.#pendingAcks.delete(id);
    }
  }

  #flushProgress(now) {
    this.#lastProgressSentAt = now;
    for (const [jobId, slices] of this.#progressed) {
      if (slices.size > 0) this.#send({ type: "progress", job: jobId, slices: [...slices].sort((a, b) => a - b) });
    }
    this.#progressed.clear();
  }

  #onSliceConsole(record, { level, message, sliceNumber }) {
    if (record.dropped) return;
    const slice = sliceNumber ?? record.slice; // module-level output: the slice that compiled it
    const limiter = this.#consoleWindow;
    this.#rollConsoleWindow(Date.now());
    if (limiter.sent >= CONSOLE_LINES_PER_SECOND) {
      const dropped = limiter.dropped.get(record.job.id) ?? { count: 0, slice };
      dropped.count += 1;
      dropped.slice = slice;
      limiter.dropped.set(record.job.id, dropped);
      return;
    }
    limiter.sent += 1;
    this.#send({ type: "console", job: record.job.id, slice, level, message: clip(String(message), MAX_MESSAGE_CHARS) });
  }

  /** Starts a new one-second console window, first saying how many lines the last one dropped. */
  #rollConsoleWindow(now) {
    const limiter = this.#consoleWindow;
    if (now - limiter.startedAt < 1_000) return;
    limiter.startedAt = now;
    limiter.sent = 0;
    for (const [jobId, { count, slice }] of limiter.dropped) {
      limiter.sent += 1;
      this.#send({ type: "console", job: jobId, slice, level: "error", message: `… ${count} lines dropped` });
    }
    limiter.dropped.clear();
  }

  /** Tells the scheduler how many more slices this worker can take now (absolute, not added). */
  #announceReady() {
    if (!this.#welcomed) return;
    const capacity = this.#cores - this.#computing - this.#queue.length;
    if (capacity > 0) this.#send({ type: "ready", capacity });
  }

  // ---------------------------------------------------------------------- state, stats

  #updateWorkState() {
    if (!this.#running || !this.#welcomed) {
      this.#emitStats();
      return;
    }
    if (this.#held.size === 0) {
      this.#setState(STATES.WAITING);
      return;
    }
    const jobs = [...new Set([...this.#held.values()].map((record) => record.job.id))];
    this.#setState(STATES.COMPUTING, { slices: this.#held.size, jobs });
  }

  #setState(state, detail = {}) {
    const key = `${state}\u0000${JSON.stringify(detail)}`;
    this.#state = state;
    if (key !== this.#stateKey) {
      this.#stateKey = key;
      callQuietly(this.#onState, state, detail);
    }
    this.#emitStats();
  }

  #emitStats() {
    callQuietly(this.#onStats, this.stats);
  }

  #log_(message, level = "info") {
    callQuietly(this.#log, message, level);
  }

  /** Holding a Web Lock is one of the signals that keep browsers from freezing a hidden tab. */
  #holdLock() {
    if (this.#releaseLock || !globalThis.navigator?.locks) return;
    let release;
    const held = new Promise((resolve) => { release = resolve; });
    this.#releaseLock = release;
    const name = `dcp-worker-${globalThis.crypto?.randomUUID?.() ?? Math.random()}`;
    navigator.locks.request(name, () => held).catch(() => {});
  }

  #releaseHeldLock() {
    this.#releaseLock?.();
    this.#releaseLock = null;
  }
}
