/*
 * DCP supervisor: the page side of a worker. One websocket to the scheduler, one sandbox pool.
 *
 *   import { Supervisor } from "/worker/supervisor.js";
 *   const supervisor = new Supervisor({
 *     socketURL: "wss://portal.example/ws/worker/",
 *     sandboxURL: "https://portal.example/worker/sandbox.js",
 *     pyodideURL: "https://portal.example/worker/vendor/pyodide/",
 *     cores: 3,
 *     gpu: true,                       // offer this browser's GPU to jobs that need one
 *     computeGroups: [{ joinKey, joinSecret }],  // also compute these groups' jobs
 *     leavePublicGroup: false,         // true: only the groups' jobs
 *     token: "…",                      // a worker token: connect without a signed-in session
 *     paymentAddress: "0x…",           // pay credits into this account address
 *     jobs: ["<job id>", …],           // only these jobs (default []: any job)
 *     dutyCycle: 0.5,                  // each core computes at most half the time (default 1)
 *     onPacing: (pacing) => {},        // see "Pacing" below
 *     onState: (state, detail) => {},  // see STATES below
 *     onStats: ({ slicesComputed, creditsEarned, inFlight, state }) => {},
 *     log: (message, level) => {},     // level: "info" | "warn" | "error"
 *   });
 *   supervisor.start();  supervisor.setCores(2);  supervisor.setGPU(false);  supervisor.stop();
 *   supervisor.setDutyCycle(0.25);  supervisor.pacing;  // {dutyCycle, cores, activeCores, …}
 *
 * It speaks the worker side of docs/protocol.md ("Worker socket"): hello, then ready {capacity}
 * whenever it has free cores; it runs each task's slices on the pool, at most `cores` at once
 * (fewer while pacing holds back, below; the rest wait in a local queue, which counts against
 * the capacity it announces); it sends
 * progress, console lines and result batches (batching.js), and re-announces its capacity after
 * each batch. stop() hands unfinished slices back with `return`; a lost connection drops them
 * (the scheduler requeues them) and reconnects with exponential backoff and jitter
 * (connection.js).
 *
 * GPU: the hello's `webgpu` capability is true only while a WebGPU adapter was found (findGPU:
 * one requestAdapter() a page, made before the first connection) and the `gpu` switch is on
 * (the constructor's option, then setGPU()). The scheduler sends jobs that require WebGPU only
 * to such workers. setGPU() while connected says hello again on the same socket with the new
 * capability: the worker keeps its id and the slices it holds.
 *
 * Compute groups: the hello joins `computeGroups` (each a join key and secret, from the group's
 * page) and, unless `leavePublicGroup`, the public group too; setComputeGroups() changes them
 * with a new hello. A wrong key or secret is refused: the tab shows the scheduler's message.
 *
 * Headless workers (worker_static/headless.js): the hello carries `token` (a worker token, in
 * place of a signed-in session) and `payment_address` (the account paid for this worker's
 * results) when those options are given; a page with a session sends no token, and a
 * `payment_address` only when given one (the Worker tab's Pay into).
 *
 * Big results: a task carries an `upload_ticket` for its job (docs/store.md), which the pool
 * hands to the slice's sandbox: a result too big for a `result` frame is stored in the portal's
 * store and sent as a reference. The latest ticket of each job held is kept.
 *
 * Jobs: a non-empty `jobs` option (job ids) puts `jobs` in the hello: the worker takes only those
 * jobs, of the ones its groups allow.
 *
 * Pacing (pacing.js): the worker computes on spare cycles only.
 * - `dutyCycle` (a number from 0.1 to 1, default 1; anything else is a TypeError, from the
 *   constructor and from setDutyCycle()): after a slice that ran L ms, its core rests
 *   L*(1-d)/d ms before it takes another slice. A resting core is not free capacity: `ready`
 *   leaves it out, and capacity is announced again when a rest ends (a timer, and every tick
 *   and sandbox report, since a hidden tab's timers are throttled).
 * - Holding back: while slices run SLOW_RATIO times slower than their job's recent pace, a
 *   few in a row (the machine is busy with something else), it uses a core fewer and a lower
 *   duty cycle, step by step, and steps back as the pace returns; while the machine runs on
 *   battery (navigator.getBattery(), where the browser has it), at most half the cores and a
 *   duty cycle of at most 0.5. Slices already running finish; no new one starts past the limit.
 * - `pacing` (and onPacing(pacing) on every change) is {dutyCycle: the chosen one,
 *   activeDutyCycle: the one in force, cores: the chosen number, activeCores: how many may
 *   compute now, holdingBack, reason: "" or a sentence such as "holding back: on battery"}.
 *   The log says when holding back starts, changes and stops.
 *
 * The parts: connection.js (the socket), batching.js (what is sent in batches), held-slices.js
 * (the slices this worker holds), pacing.js (cores, duty cycle, holding back), isolated-pool.js
 * (the sandboxes, in a frame and process of their own, so that a work function that exhausts
 * memory crashes that process, not the tab; its slices fail with SandboxCrashed), protocol.js
 * (names, limits, credit arithmetic). This module wires them together and reports state and
 * totals to the page.
 *
 * Background tabs: nothing here waits on requestAnimationFrame. Timers of a hidden tab are
 * throttled (to once a second, or less), so every deadline is also checked whenever a sandbox
 * or the socket reports something, and the work itself runs in the sandboxes' Web Workers.
 */

import { Outbox } from "./batching.js";
import { Connection } from "./connection.js";
import { HeldSlices, isWellFormedTask } from "./held-slices.js";
import { formatCredits, parseCredits, PROTOCOL_VERSION, WORKER_RECEIVES, WORKER_SENDS } from "./protocol.js";
import { IsolatedPool } from "./isolated-pool.js";
import { Pacing } from "./pacing.js";
import { callQuietly, plural } from "./util.js";

export { addCredits, formatCredits, parseCredits, PROTOCOL_VERSION } from "./protocol.js";

/** States passed to onState(state, detail); detail is described next to each. */
export const STATES = Object.freeze({
  STOPPED: "stopped", // {}
  CONNECTING: "connecting", // {}
  WAITING: "waiting", // {}: connected, no slice held ("Waiting for work")
  COMPUTING: "computing", // {slices, jobs: [job id, ...]}
  RECONNECTING: "reconnecting", // {retryInMs, retryAt (Date.now() based), code}
  ERROR: "error", // {message}: the supervisor stopped itself (e.g. signed out)
});

const TICK_MS = 250;
const GPU_ANSWER_MS = 5_000; // how long findGPU() waits for requestAdapter() to answer

// Slice errors that are the supervisor's own decisions, not failures of the slice.
const LOCAL_SLICE_ERRORS = new Set(["Aborted", "Terminated"]);
// Slice errors after which the pool replaced the slice's sandbox: worth a line in the page's log.
const SANDBOX_LOST_ERRORS = new Set(["OutOfMemory", "SandboxCrashed"]);

function coreCount(cores) {
  return Math.max(1, Math.floor(Number(cores) || 1));
}

function jobIds(jobs) {
  if (!Array.isArray(jobs) || !jobs.every((job) => typeof job === "string")) {
    throw new TypeError(`jobs is an array of job ids (strings), not ${JSON.stringify(jobs)}`);
  }
  return [...jobs];
}

/** "1 of 2 cores at duty cycle 0.5": what the cores may do now, for the log. */
function describeUse({ activeCores, cores, activeDutyCycle }) {
  return `${activeCores} of ${plural(cores, "core")} at duty cycle ${activeDutyCycle}`;
}

/** Holds a Web Lock until the returned function is called: one of the signals that keep
 * browsers from freezing a hidden tab. Returns null where there are no Web Locks. */
function holdPageLock() {
  if (!globalThis.navigator?.locks) return null;
  let release;
  const held = new Promise((resolve) => { release = resolve; });
  const name = `dcp-worker-${globalThis.crypto?.randomUUID?.() ?? Math.random()}`;
  navigator.locks.request(name, () => held).catch(() => {});
  return release;
}

/** The page's BatteryManager, or null where the browser does not tell. Never rejects. */
async function findBattery() {
  try {
    return (await globalThis.navigator?.getBattery?.()) ?? null;
  } catch {
    return null; // a browser that refuses to tell: as if there were no battery
  }
}

let gpuSearch = null;

/**
 * Looks for a WebGPU adapter, once a page: resolves to {found, description, reason}, where
 * `description` is the adapter's own (else its vendor and architecture, else "found") and
 * `reason` says why none was found when the browser said why. Never rejects.
 */
export function findGPU() {
  gpuSearch ??= searchForGPU(globalThis.navigator?.gpu);
  return gpuSearch;
}

async function searchForGPU(gpu) {
  if (!gpu) return { found: false, description: "", reason: "this browser offers no WebGPU" };
  let timer;
  const silence = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer in ${GPU_ANSWER_MS / 1000} s`)), GPU_ANSWER_MS);
  });
  try {
    const adapter = await Promise.race([gpu.requestAdapter(), silence]);
    if (!adapter) return { found: false, description: "", reason: "" };
    const info = adapter.info ?? (await adapter.requestAdapterInfo?.()) ?? {};
    return { found: true, description: adapterDescription(info), reason: "" };
  } catch (error) {
    return { found: false, description: "", reason: error?.message || String(error) };
  } finally {
    clearTimeout(timer);
  }
}

function adapterDescription({ description, vendor, architecture }) {
  return description || [vendor, architecture].filter(Boolean).join(" ") || "found";
}

export class Supervisor {
  #sandboxURL;
  #pyodideURL;
  #pacing; // cores, duty cycle and holding back (pacing.js)
  #gpuWanted;
  #onState;
  #onStats;
  #onPacing;
  #log;
  #pool;
  #connection;
  #outbox;

  #running = false; // between start() and stop() (or a fatal close)
  #state = STATES.STOPPED;
  #stateKey = "";
  #tickTimer = null;
  #releaseLock = null;
  #held = new HeldSlices();
  #slicesComputed = 0;
  #creditUnits = 0n;
  #gpu = null; // what findGPU() found, once it has answered
  #starts = 0; // start() calls: only the latest one connects, once the GPU search answers
  #announcedGPU = false; // what the last hello said of webgpu
  #helloAgainId = null; // the id of the hello that setGPU() or setComputeGroups() sent
  #computeGroups = []; // [{joinKey, joinSecret}]
  #leavePublicGroup = false;
  #token = "";
  #paymentAddress = "";
  #minWage = ""; // credits per CPU-second: jobs that pay less are not handed to this worker
  #refusal = ""; // the scheduler's ENOTAUTHENTICATED words, until the socket closes
  #jobs = [];
  #uploadTickets = new Map(); // job id -> the upload_ticket of its latest task
  #lastPacing; // the pacing state onPacing last heard (or the first one)
  #rests = []; // cores resting after a slice: {endedAt, sliceMs} (performance.now() based)
  #restTimer = null;
  #unwatchBattery = () => {};

  /**
   * @param {object} options
   * @param {string} options.socketURL ws(s)://host/ws/worker/
   * @param {string} options.sandboxURL absolute URL of sandbox.js
   * @param {string} options.pyodideURL absolute URL of the vendor/pyodide/ folder
   * @param {number} [options.cores] slices computed at once (default: hardware threads - 1)
   * @param {boolean} [options.gpu] offer the GPU (WebGPU) when one is found (default: true);
   *   false: the hello says webgpu false and no adapter is asked for; setGPU() changes it
   * @param {Array<{joinKey: string, joinSecret: string}>} [options.computeGroups] groups to join
   * @param {boolean} [options.leavePublicGroup] true: compute only the groups' jobs
   * @param {string} [options.token] a worker token, sent in the hello (no session needed)
   * @param {string} [options.paymentAddress] 0x… account address the results are paid into
   * @param {string} [options.minWage] the least credits per CPU-second worth working for
   *   (a decimal string, e.g. "0.001"; the scheduler refuses a malformed one); "": any job
   * @param {string[]} [options.jobs] job ids: take only these jobs (default []: any job)
   * @param {number} [options.dutyCycle] the share of each core's time spent computing, 0.1 to 1
   *   (default 1); a TypeError for anything else
   * @param {function} [options.onPacing] (pacing) whenever `pacing` changes
   * @param {function} [options.onState] (state, detail) on every change of state
   * @param {function} [options.onStats] ({slicesComputed, creditsEarned, inFlight, state})
   * @param {function} [options.log] (message, level) for a person-readable event log
   * @param {object} [options.pool] a pool to use instead of a new IsolatedPool (tests)
   * @param {function} [options.WebSocket] the WebSocket class to use (tests)
   */
  constructor({
    socketURL,
    sandboxURL,
    pyodideURL,
    cores = Math.max(1, (globalThis.navigator?.hardwareConcurrency ?? 2) - 1),
    gpu = true,
    computeGroups = [],
    leavePublicGroup = false,
    token = "",
    paymentAddress = "",
    minWage = "",
    jobs = [],
    dutyCycle = 1,
    onState,
    onStats,
    onPacing,
    log,
    pool = null,
    WebSocket: WebSocketClass = globalThis.WebSocket,
  }) {
    if (!socketURL) throw new TypeError("Supervisor needs socketURL");
    if (!pool && (!sandboxURL || !pyodideURL)) throw new TypeError("Supervisor needs sandboxURL and pyodideURL");
    this.#sandboxURL = sandboxURL;
    this.#pyodideURL = pyodideURL;
    this.#pacing = new Pacing({ cores: coreCount(cores), dutyCycle });
    this.#lastPacing = this.#pacing.state;
    this.#jobs = jobIds(jobs ?? []);
    this.#gpuWanted = Boolean(gpu);
    this.#setGroups(computeGroups, leavePublicGroup);
    this.#token = token ?? "";
    this.#paymentAddress = paymentAddress ?? "";
    this.#minWage = String(minWage ?? "").trim();
    this.#onState = onState;
    this.#onStats = onStats;
    this.#onPacing = onPacing;
    this.#log = log;
    this.#pool = pool;
    const logLine = (message, level) => this.#logLine(message, level);
    this.#connection = new Connection({
      url: socketURL,
      WebSocket: WebSocketClass,
      hello: () => this.#hello(),
      handlers: this.#messageHandlers(),
      events: this.#connectionEvents(),
      log: logLine,
    });
    this.#outbox = new Outbox({ connection: this.#connection, log: logLine });
  }

  get state() {
    return this.#state;
  }

  get cores() {
    return this.#pacing.cores;
  }

  /** The chosen duty cycle (what the constructor or setDutyCycle() was given). */
  get dutyCycle() {
    return this.#pacing.dutyCycle;
  }

  /** {dutyCycle, activeDutyCycle, cores, activeCores, holdingBack, reason}: see "Pacing" above. */
  get pacing() {
    return this.#pacing.state;
  }

  /** Whether the hello offers the GPU: one was found and the `gpu` switch is on. */
  get usesGPU() {
    return this.#gpuWanted && Boolean(this.#gpu?.found);
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
    if (this.#pool) this.#pool.resize(this.cores);
    else this.#pool = new IsolatedPool({ size: this.cores, sandboxURL: this.#sandboxURL, pyodideURL: this.#pyodideURL });
    this.#releaseLock ??= holdPageLock();
    this.#watchBattery();
    this.#starts += 1;
    const start = this.#starts;
    this.#searchForGPU().then(() => {
      this.#pool?.setGpu?.(this.usesGPU);
      if (this.#running && start === this.#starts) this.#connection.start();
    });
  }

  /** Hands every unfinished slice back (`return`), aborts them in the pool, closes the socket. */
  stop() {
    if (!this.#running) return;
    this.#running = false;
    let returned = 0;
    if (this.#connection.isOpen) {
      this.#outbox.flushAll(); // finished slices are worth sending: the scheduler pays for them
      for (const [jobId, slices] of this.#held.slicesByJob()) {
        this.#connection.send({ type: WORKER_SENDS.RETURN, job: jobId, slices });
        returned += slices.length;
      }
    }
    this.#connection.stop();
    this.#stopTicking();
    this.#dropAll("the worker was stopped");
    this.#rests = [];
    this.#scheduleRestEnd();
    this.#unwatchBattery();
    this.#releasePageLock();
    this.#logLine(returned ? `Stopped: handed ${plural(returned, "slice")} back` : "Stopped");
    this.#setState(STATES.STOPPED);
  }

  /** Changes how many slices run at once; announces the new capacity when connected. */
  setCores(cores) {
    const count = coreCount(cores);
    if (count === this.cores) return;
    this.#pacing.setCores(count);
    this.#pool?.resize(count);
    if (!this.#pacingChanged()) {
      this.#pump();
      this.#announceReady();
    }
    this.#emitStats();
  }

  /** Changes the share of each core's time spent computing (0.1 to 1, else a TypeError). */
  setDutyCycle(fraction) {
    this.#pacing.setDutyCycle(fraction);
    this.#pacingChanged();
  }

  /** Turns offering the GPU on or off; while connected, tells the scheduler at once (a new
   * hello on the same socket: the slices in flight carry on). */
  setGPU(on) {
    this.#gpuWanted = Boolean(on);
    this.#searchForGPU().then(() => {
      this.#pool?.setGpu?.(this.usesGPU); // sandboxes of jobs that start from now on
      if (this.usesGPU !== this.#announcedGPU) this.#helloAgain();
    });
  }

  /** Joins these compute groups ([{joinKey, joinSecret}]) and, unless `leavePublicGroup`, the
   * public group; while connected, tells the scheduler at once with a new hello. */
  setComputeGroups(groups, { leavePublicGroup = false } = {}) {
    this.#setGroups(groups, leavePublicGroup);
    this.#helloAgain();
  }

  #setGroups(groups, leavePublicGroup) {
    this.#computeGroups = (groups ?? []).map(({ joinKey, joinSecret }) => ({ joinKey, joinSecret }));
    this.#leavePublicGroup = Boolean(leavePublicGroup);
  }

  // ------------------------------------------------------------------------ connection

  /** The fields of the hello message (connection.js adds its type, id and version). */
  #hello() {
    this.#announcedGPU = this.usesGPU;
    const hello = { cores: this.cores, capabilities: { webgpu: this.#announcedGPU } };
    if (this.#jobs.length) hello.jobs = this.#jobs;
    if (this.#computeGroups.length) hello.compute_groups = this.#computeGroups;
    if (this.#leavePublicGroup) hello.leave_public_group = true;
    if (this.#token) hello.token = this.#token;
    if (this.#paymentAddress) hello.payment_address = this.#paymentAddress;
    if (this.#minWage) hello.min_wage = this.#minWage;
    return hello;
  }

  /** Waits for findGPU() when the GPU may be offered (it asks the browser once a page). */
  async #searchForGPU() {
    if (this.#gpuWanted && this.#gpu === null) this.#gpu = await findGPU();
  }

  /** Says hello again on the live socket, for a changed capability; a socket opened later
   * says it in its own hello. */
  #helloAgain() {
    if (!this.#connection.isOpen) return;
    const id = this.#connection.requestId();
    this.#helloAgainId = id;
    this.#connection.send({ type: WORKER_SENDS.HELLO, id, version: PROTOCOL_VERSION, ...this.#hello() });
  }

  /** What the supervisor does at each moment of the connection's life (connection.js). */
  #connectionEvents() {
    return {
      connecting: () => this.#setState(STATES.CONNECTING),
      opened: () => {
        this.#outbox.restartProgressClock();
        this.#tickTimer = setInterval(() => this.#tick(), TICK_MS);
      },
      closed: (closure) => this.#onDisconnected(closure),
      reconnecting: (detail) => this.#setState(STATES.RECONNECTING, detail),
    };
  }

  #onDisconnected({ why, fatal }) {
    this.#stopTicking();
    const lost = this.#dropAll("the connection to the scheduler was lost");
    if (fatal) {
      // The scheduler's own words (a revoked token), else the close's ("Not signed in").
      const words = this.#refusal ? `The scheduler refused this worker: ${this.#refusal}` : fatal;
      this.#refusal = "";
      this.#running = false;
      this.#releasePageLock();
      this.#logLine(`Disconnected (${why}): ${words}`, "error");
      this.#setState(STATES.ERROR, { message: words });
      return;
    }
    const dropped = lost ? `; dropped ${plural(lost, "slice")}, the scheduler requeues them` : "";
    this.#logLine(`Disconnected (${why})${dropped}`, "warn");
  }

  #stopTicking() {
    clearInterval(this.#tickTimer);
    this.#tickTimer = null;
  }

  // -------------------------------------------------------------------------- messages

  /** The handler of each message type the scheduler sends on the worker socket. */
  #messageHandlers() {
    return new Map([
      [WORKER_RECEIVES.WELCOME, (message) => this.#onWelcome(message)],
      [WORKER_RECEIVES.TASK, (message) => this.#onTask(message)],
      [WORKER_RECEIVES.WAITING, () => this.#onWaiting()],
      [WORKER_RECEIVES.ABORT, (message) => this.#onAbort(message)],
      [WORKER_RECEIVES.ACK, (message, settled) => this.#onAck(message, settled)],
      [WORKER_RECEIVES.ERROR, (message) => this.#onError(message)],
    ]);
  }

  #onWelcome(message) {
    const paid = message.address ? `; credits go to ${message.address}` : "";
    const groups = message.compute_groups?.length ? `; compute groups ${message.compute_groups.join(", ")}` : "";
    const publicJobs = message.public_group === false ? "; public jobs not taken" : "";
    const onlyJobs = message.jobs?.length ? `; only jobs ${message.jobs.join(", ")}` : "";
    if (message.id != null && message.id === this.#helloAgainId) {
      this.#logLine(`The scheduler was told: GPU ${this.usesGPU ? "offered" : "not offered"}${groups}${publicJobs}`);
    } else {
      this.#logLine(`Connected as worker ${message.worker ?? "?"}${paid}${groups}${publicJobs}${onlyJobs}`);
    }
    this.#updateWorkState();
    this.#announceReady();
  }

  #onWaiting() {
    if (this.#held.size === 0) this.#setState(STATES.WAITING);
  }

  #onTask(message) {
    if (!isWellFormedTask(message)) {
      this.#logLine(`Ignored a malformed task ${JSON.stringify(message.task ?? null)}`, "warn");
      return;
    }
    this.#held.addTask(message);
    this.#keepUploadTicket(message.job.id, message.upload_ticket);
    this.#logLine(`Task ${message.task}: ${plural(message.slices.length, "slice")} of job ${message.job.id}`);
    this.#pump();
    this.#updateWorkState();
  }

  /** Keeps a task's upload ticket for its job, and forgets those of jobs no longer held. */
  #keepUploadTicket(jobId, ticket) {
    const held = new Set(this.#held.jobs());
    for (const known of [...this.#uploadTickets.keys()]) if (!held.has(known)) this.#uploadTickets.delete(known);
    if (typeof ticket === "string" && ticket) this.#uploadTickets.set(jobId, ticket);
  }

  #onAbort({ job: jobId }) {
    const dropped = this.#held.dropWhere((record) => record.job.id === jobId);
    this.#pool?.abortJob(jobId, `job ${jobId} was cancelled`);
    this.#outbox.dropJob(jobId);
    this.#logLine(`Job ${jobId} was cancelled: dropped ${plural(dropped.length, "slice")}`, "warn");
    this.#pump();
    this.#announceReady();
    this.#updateWorkState();
  }

  /** A result batch was accepted: `settled` is what it held ({job, count}), if still known. */
  #onAck(message, settled) {
    const accepted = Number(message.accepted) || 0;
    let earned = 0n;
    try {
      earned = parseCredits(message.earned ?? "0");
    } catch {
      this.#logLine(`The scheduler acknowledged with an unreadable amount ${JSON.stringify(message.earned)}`, "warn");
    }
    this.#slicesComputed += accepted;
    this.#creditUnits += earned;
    const job = settled ? ` of job ${settled.job}` : "";
    this.#logLine(`${plural(accepted, "result")}${job} accepted, earned ${formatCredits(earned)} credits`);
    this.#emitStats();
  }

  #onError(message) {
    if (message.code === "ESUSPENDED") {
      this.#logLine(`No work for a while: ${message.message}`, "warn");
      return;
    }
    const what = `${message.code ?? "error"} ${message.message ?? ""}`.trim();
    if (message.code === "ENOTAUTHENTICATED") {
      this.#refusal = message.message ?? what;
      this.#logLine(`The scheduler refused this worker: ${this.#refusal}`, "warn");
      return; // the socket closes with 4401 next, which stops the worker with these words
    }
    if (message.id != null && message.id === this.#connection.helloId) {
      // Not welcomed, so no work would come: stop and say why (a wrong compute group secret).
      this.#logLine(`The scheduler refused this worker's hello: ${what}`, "error");
      this.stop();
      this.#setState(STATES.ERROR, { message: message.message ?? what });
      return;
    }
    if (message.id != null && message.id === this.#helloAgainId) {
      // The earlier hello still holds on the scheduler: the worker goes on as it was.
      this.#logLine(`The scheduler refused the change: ${what}`, "error");
      return;
    }
    this.#logLine(`The scheduler refused a message: ${what}`, "warn");
  }

  // ---------------------------------------------------------------------------- slices

  /** Hands queued slices to the pool while cores are free (neither computing nor resting). */
  #pump() {
    if (!this.#pool) return;
    while (this.#held.computing + this.#restingCores() < this.#pacing.activeCores) {
      const record = this.#held.nextQueued();
      if (!record) return;
      this.#compute(record);
    }
  }

  #compute(record) {
    this.#pool
      .run(record.job, record.slice, record.datum, {
        timeoutMs: record.timeoutMs,
        uploadTicket: this.#uploadTickets.get(record.job.id),
        onProgress: () => this.#onSliceProgress(record),
        onConsole: (line) => this.#onSliceConsole(record, line),
      })
      .then(
        ({ value, gpuMs }) => this.#onSliceDone(record, { value, gpuMs }),
        (error) => this.#onSliceDone(record, { error }),
      );
  }

  #onSliceProgress(record) {
    if (record.dropped) return;
    this.#outbox.noteProgress(record.job.id, record.slice);
    this.#tick();
  }

  #onSliceConsole(record, { level, message, slice }) {
    if (record.dropped) return;
    // Module-level output (slice null) is charged to the slice that compiled the work function.
    this.#outbox.console(record.job.id, slice ?? record.slice, level, message);
  }

  #onSliceDone(record, { value, error, gpuMs }) {
    if (record.dropped) return;
    const exactMs = performance.now() - record.startedAt;
    this.#held.forget(record);
    this.#outbox.forgetProgress(record.job.id, record.slice);
    this.#pace(record, exactMs, error); // before #pump(): the core rests first
    let capacityFreed = this.#report(record, { value, error, ms: Math.round(exactMs), gpuMs });
    this.#pump();
    capacityFreed = this.#outbox.sendDue() || capacityFreed;
    if (capacityFreed) this.#announceReady();
    this.#endRests();
    this.#updateWorkState();
  }

  /** Batches a finished slice's outcome (sent when its task is done); true if capacity was freed. */
  #report(record, { value, error, ms, gpuMs }) {
    const jobId = record.job.id;
    if (error && LOCAL_SLICE_ERRORS.has(error.name)) {
      // Not our decision (we mark slices dropped before aborting them): give it back at once.
      return this.#connection.send({ type: WORKER_SENDS.RETURN, job: jobId, slices: [record.slice] });
    }
    if (error && SANDBOX_LOST_ERRORS.has(error.name)) {
      this.#logLine(`Slice ${record.slice} of job ${jobId} lost its sandbox (${error.name}): ${error.message}`, "warn");
    }
    if (error) this.#outbox.addError(jobId, record.slice, error);
    else this.#outbox.addResult(jobId, { slice: record.slice, value, ms, gpuMs });
    return record.task.open.size === 0 && this.#outbox.flush(jobId);
  }

  /** Drops every held slice and aborts them in the pool; unsent results go too. */
  #dropAll(why) {
    const dropped = this.#held.dropWhere(() => true);
    for (const jobId of new Set(dropped.map((record) => record.job.id))) this.#pool?.abortJob(jobId, why);
    this.#outbox.clear();
    this.#updateWorkState();
    return dropped.length;
  }

  /** Timer: sends what is due and announces capacity after results or rests. */
  #tick() {
    if (this.#outbox.sendDue()) this.#announceReady();
    this.#pacing.noteTime({ now: performance.now(), idle: this.#held.size === 0 });
    this.#pacingChanged();
    this.#endRests();
  }

  /** Tells the scheduler how many more slices this worker can take now (absolute, not added):
   * its active cores, less those computing, resting or promised to queued slices. */
  #announceReady() {
    if (!this.#connection.welcomed) return;
    const capacity = this.#pacing.activeCores - this.#restingCores() - this.#held.busy;
    if (capacity > 0) this.#connection.send({ type: WORKER_SENDS.READY, capacity });
  }

  // ---------------------------------------------------------------------------- pacing

  /** A slice ended after `ms`: its job's pace learns from it (results only), its core rests. */
  #pace(record, ms, error) {
    if (!error) this.#pacing.noteSlice({ job: record.job.id, ms, now: performance.now() });
    if (this.#pacing.restMs(ms) > 0) {
      this.#rests.push({ endedAt: performance.now(), sliceMs: ms });
      this.#scheduleRestEnd();
    }
    this.#pacingChanged();
  }

  /** When a rest ends: each rest lasts as the duty cycle in force says, so it can change. */
  #restEnd({ endedAt, sliceMs }) {
    return endedAt + this.#pacing.restMs(sliceMs);
  }

  #restingCores() {
    const now = performance.now();
    return this.#rests.filter((rest) => this.#restEnd(rest) > now).length;
  }

  /** Lets cores whose rest is over take slices again, and says so to the scheduler. */
  #endRests() {
    if (!this.#forgetEndedRests()) return;
    this.#pump();
    this.#announceReady();
  }

  /** Forgets the rests that are over; true if there were any. */
  #forgetEndedRests() {
    const now = performance.now();
    const resting = this.#rests.filter((rest) => this.#restEnd(rest) > now);
    if (resting.length === this.#rests.length) return false;
    this.#rests = resting;
    this.#scheduleRestEnd();
    return true;
  }

  /** A timer for the first rest to end (the tick and sandbox reports check too). */
  #scheduleRestEnd() {
    clearTimeout(this.#restTimer);
    this.#restTimer = null;
    if (!this.#rests.length) return;
    const first = Math.min(...this.#rests.map((rest) => this.#restEnd(rest)));
    this.#restTimer = setTimeout(() => this.#endRests(), Math.max(0, first - performance.now()) + 1);
  }

  /** Tells the page (onPacing, the log) when the pacing changed, and acts on it: true if it
   * announced the capacity (more cores may compute). */
  #pacingChanged() {
    const before = this.#lastPacing;
    const now = this.#pacing.state;
    if (JSON.stringify(now) === JSON.stringify(before)) return false;
    this.#lastPacing = now;
    if (now.reason !== before.reason) this.#logPacing(now);
    callQuietly(this.#onPacing, now);
    this.#scheduleRestEnd(); // a new duty cycle moves the ends of rests
    const restsEnded = this.#forgetEndedRests();
    if (!restsEnded && now.activeCores <= before.activeCores) return false;
    this.#pump();
    this.#announceReady();
    return true;
  }

  #logPacing(pacing) {
    const reason = pacing.reason.replace(/^holding back: /, "");
    if (pacing.holdingBack) this.#logLine(`Holding back: ${reason}; ${describeUse(pacing)}`, "warn");
    else this.#logLine(`No longer holding back; ${describeUse(pacing)}`);
  }

  /** Follows the battery, where the browser tells, until stop(): on battery, it holds back. */
  #watchBattery() {
    this.#unwatchBattery();
    let unwatch = () => {};
    let watching = true;
    this.#unwatchBattery = () => {
      watching = false;
      unwatch();
    };
    findBattery().then((battery) => {
      if (!battery || !watching) return;
      const follow = () => {
        this.#pacing.setOnBattery(battery.charging === false);
        this.#pacingChanged();
      };
      battery.addEventListener?.("chargingchange", follow);
      unwatch = () => battery.removeEventListener?.("chargingchange", follow);
      follow();
    });
  }

  // ---------------------------------------------------------------------- state, stats

  #updateWorkState() {
    if (!this.#running || !this.#connection.welcomed) {
      this.#emitStats();
      return;
    }
    if (this.#held.size === 0) {
      this.#setState(STATES.WAITING);
      return;
    }
    this.#setState(STATES.COMPUTING, { slices: this.#held.size, jobs: this.#held.jobs() });
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

  #logLine(message, level = "info") {
    callQuietly(this.#log, message, level);
  }

  #releasePageLock() {
    this.#releaseLock?.();
    this.#releaseLock = null;
  }
}
