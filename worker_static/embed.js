/*
 * The frame of a worker embedded in another site's page: /dcp-client/dcp-worker.js (the page's
 * side, `dcp.worker.Worker`) puts /worker/embed.html in a hidden frame, and this module runs a
 * Supervisor there, with the socket and the sandboxes of this portal, as the Worker tab does.
 * The page never touches a sandbox, and a work function never touches the page.
 *
 * Handshake. Once loaded, this frame says {type: "dcp-worker:hello"} to its parent; the parent
 * answers {type: "dcp-worker:connect", options} with a MessagePort. The frame takes it only from
 * its parent and only where the parent's origin may embed a worker (the dcp-embed-origins meta
 * tag, from WORKER_EMBED_ORIGINS; the browser already refuses to show this frame in any other
 * page, by its frame-ancestors), else it answers {type: "dcp-worker:refused", message}. Then
 * everything travels over the port:
 *
 *   page -> frame   {type: "start"}  {type: "stop"}
 *   frame -> page   {type: "event", name, detail}  {type: "stats", stats}
 *
 *   event      detail
 *   start      {crossOriginIsolated}           connected and asking for work
 *   stop       {slicesComputed, creditsEarned} after stop(), or after an error stopped it
 *   state      {state, ...}                    every state of the Supervisor (STATES)
 *   result     {accepted, slicesComputed}      the scheduler accepted results of this worker
 *   payment    {earned, total}                 credits (decimal strings) paid for them
 *   error      {message}                       the worker stopped: why
 *   log        {message, level}                the Supervisor's event log
 *
 * `options` are the Supervisor's (token, paymentAddress, cores, gpu, computeGroups, …) less what
 * this frame decides itself (FRAME_OWNS).
 */

import { formatCredits, parseCredits, STATES, Supervisor } from "./supervisor.js";
import { workerURLs } from "./util.js";

const HELLO = "dcp-worker:hello";
const CONNECT = "dcp-worker:connect";
const REFUSED = "dcp-worker:refused";
// Supervisor options that are this frame's to set: where it connects, what it reports to.
const FRAME_OWNS = ["socketURL", "sandboxURL", "pyodideURL", "onState", "onStats", "log", "pool", "WebSocket"];
const WORKING = new Set([STATES.WAITING, STATES.COMPUTING]);

const embedders = new Set(document.querySelector('meta[name="dcp-embed-origins"]').content.split(/\s+/));
const stateLine = document.getElementById("state");

let port = null;
let supervisor = null;
let running = false; // from a start command until the `stop` event that ends it
let announced = false; // whether this run's `start` event was sent
let reported = { slicesComputed: 0, creditsEarned: "0" }; // totals as of the last events
let setupError = ""; // why the Supervisor could not be made, if it could not

function mayCommand(origin) {
  return embedders.has("*") || embedders.has(origin);
}

function emit(name, detail = {}) {
  port.postMessage({ type: "event", name, detail });
}

function endRun() {
  running = false;
  announced = false;
  emit("stop", { slicesComputed: reported.slicesComputed, creditsEarned: reported.creditsEarned });
}

function onState(state, detail) {
  stateLine.textContent = state;
  emit("state", { ...detail, state });
  if (running && !announced && WORKING.has(state)) {
    announced = true;
    emit("start", { crossOriginIsolated: Boolean(globalThis.crossOriginIsolated) });
  } else if (state === STATES.ERROR) {
    emit("error", { message: detail.message ?? "the worker stopped" });
    if (running) endRun();
  } else if (state === STATES.STOPPED) {
    // A refused hello stops the Supervisor just before it reports the error: the error first.
    queueMicrotask(() => running && endRun());
  }
}

/** Turns the totals the Supervisor reports into `result` and `payment` events. */
function onStats(stats) {
  port.postMessage({ type: "stats", stats });
  const accepted = stats.slicesComputed - reported.slicesComputed;
  const earned = parseCredits(stats.creditsEarned) - parseCredits(reported.creditsEarned);
  reported = { slicesComputed: stats.slicesComputed, creditsEarned: stats.creditsEarned };
  if (accepted > 0) emit("result", { accepted, slicesComputed: stats.slicesComputed });
  if (earned > 0n) emit("payment", { earned: formatCredits(earned), total: stats.creditsEarned });
}

function newSupervisor(options) {
  const given = Object.entries(options ?? {}).filter(([name]) => !FRAME_OWNS.includes(name));
  return new Supervisor({
    ...Object.fromEntries(given),
    ...workerURLs(),
    onState,
    onStats,
    log: (message, level) => emit("log", { message: String(message), level }),
  });
}

const COMMANDS = Object.freeze({
  start: () => {
    running = true;
    supervisor.start();
  },
  stop: () => (running ? supervisor.stop() : endRun()), // a stop always ends with `stop`
});

function onCommand({ data }) {
  if (!Object.hasOwn(COMMANDS, data?.type)) return;
  if (supervisor) {
    COMMANDS[data.type](data);
    return;
  }
  emit("error", { message: `the worker could not be set up: ${setupError}` });
  endRun();
}

function onConnect(event) {
  if (event.source !== parent || event.data?.type !== CONNECT || !event.ports[0]) return;
  if (!mayCommand(event.origin)) {
    const message = `${event.origin} may not embed a worker of ${location.origin}`;
    parent.postMessage({ type: REFUSED, message }, event.origin);
    return;
  }
  window.removeEventListener("message", onConnect);
  port = event.ports[0];
  port.onmessage = onCommand;
  try {
    supervisor = newSupervisor(event.data.options);
  } catch (error) {
    setupError = error?.message || String(error); // said when the page gives its first command
  }
}

if (parent === window) {
  stateLine.textContent = "This page runs a DCP worker inside a page that embeds it with /dcp-client/dcp-worker.js.";
} else {
  window.addEventListener("message", onConnect);
  // The page is going away: hand the slices held back now rather than when the socket drops.
  window.addEventListener("pagehide", () => supervisor?.stop());
  parent.postMessage({ type: HELLO }, "*");
}
