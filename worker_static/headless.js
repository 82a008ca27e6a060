/*
 * The page of a headless worker (`dcp worker`, dcp/worker/): a Supervisor started at once with
 * the options of the URL fragment, its state exposed as window.dcpWorker for the process that
 * drives the browser.
 *
 *   /worker/headless.html#token=…&paymentAddress=0x…&cores=2&gpu=0&join=KEY,SECRET&leavePublicGroup=1
 *     &job=JOB_ID&job=JOB_ID&dutyCycle=0.5&minWage=0.001
 *
 * `join` and `job` may repeat: the groups joined, and the only jobs taken (of those the groups
 * allow; none: any). `dutyCycle` is the share of the time the cores compute (0.1 to 1; absent:
 * all the time).
 *
 * The options live in the fragment, never the query string: a fragment is not sent to the
 * server, so a worker token does not land in its logs.
 *
 *   window.dcpWorker.stats()     // {slicesComputed, creditsEarned, inFlight, state, jobs, error}
 *   window.dcpWorker.state       // see STATES in supervisor.js
 *   window.dcpWorker.logSince(n) // {lines: [{at, level, message}], next}: log lines from the n-th
 *   await window.dcpWorker.stop() // hands in-flight slices back, closes the socket
 */

import { STATES, Supervisor } from "./supervisor.js";
import { workerURLs } from "./util.js";

const LOG_KEPT = 1_000; // lines kept for a controller that has not read them yet
const STOP_GRACE_MS = 300; // lets the socket send the returned slices before the browser closes

/** The Supervisor options a fragment such as "#cores=2&join=KEY,SECRET" says. */
export function optionsFromFragment(fragment) {
  const params = new URLSearchParams(fragment.replace(/^#/, ""));
  const options = {
    token: params.get("token") ?? "",
    paymentAddress: params.get("paymentAddress") ?? "",
    gpu: !["0", "false", "no"].includes(params.get("gpu") ?? "1"),
    computeGroups: params.getAll("join").map(joinCredentials),
    leavePublicGroup: ["1", "true", "yes"].includes(params.get("leavePublicGroup") ?? ""),
    jobs: params.getAll("job").map((job) => job.trim()).filter(Boolean),
  };
  const cores = Number.parseInt(params.get("cores") ?? "", 10);
  if (cores >= 1) options.cores = cores;
  // Checked by the Supervisor (and before that by dcp/worker/options.py), not here.
  if (params.has("dutyCycle")) options.dutyCycle = Number(params.get("dutyCycle"));
  if (params.has("minWage")) options.minWage = params.get("minWage"); // the scheduler checks it
  return options;
}

function joinCredentials(text) {
  const comma = text.indexOf(",");
  return { joinKey: text.slice(0, comma).trim(), joinSecret: text.slice(comma + 1).trim() };
}

/** The log lines the controller has yet to read, numbered from the first line ever logged. */
class LogLines {
  #lines = [];
  #first = 0;

  add(message, level) {
    this.#lines.push({ at: new Date().toISOString(), level, message: String(message) });
    const excess = this.#lines.length - LOG_KEPT;
    if (excess > 0) {
      this.#lines.splice(0, excess);
      this.#first += excess;
    }
  }

  since(index) {
    const start = Math.max(0, index - this.#first);
    return { lines: this.#lines.slice(start), next: this.#first + this.#lines.length };
  }
}

const log = new LogLines();
let jobs = [];
let error = "";
const stateLine = document.getElementById("state");

function onState(state, detail) {
  jobs = state === STATES.COMPUTING ? [...(detail.jobs ?? [])] : [];
  if (state === STATES.ERROR) error = detail.message ?? "stopped";
  stateLine.textContent = state;
}

const supervisor = new Supervisor({
  ...optionsFromFragment(location.hash),
  ...workerURLs(),
  onState,
  log: (message, level) => log.add(message, level),
});

window.dcpWorker = {
  stats: () => ({ ...supervisor.stats, jobs, error }),
  get state() {
    return supervisor.state;
  },
  logSince: (index) => log.since(index),
  async stop() {
    supervisor.stop();
    await new Promise((resolve) => setTimeout(resolve, STOP_GRACE_MS));
    return supervisor.stats;
  },
};
// Keep the fragment (and a token in it) out of the page's history and any later Referer.
history.replaceState(null, "", location.pathname);
supervisor.start();
