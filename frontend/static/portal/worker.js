// Worker tab: Start/Stop, the cores and "CPU use" selectors, the "Use GPU" switch, "Pay into"
// (the last three remembered in this browser's localStorage), live totals, the status and
// pacing lines and the event log.
// The work itself is done by the Supervisor (worker_static/supervisor.js) and its sandboxes;
// the credit arithmetic is the protocol's (worker_static/protocol.js). A supervisor pays into
// one address, so a new "Pay into" choice retires it and, if it was started, starts a new one
// (a new hello) on the same sandboxes.

import { IsolatedPool } from "/worker/isolated-pool.js";
import { addCredits, formatCredits, parseCredits } from "/worker/protocol.js";
import { findGPU, Supervisor, STATES } from "/worker/supervisor.js";
import { plural } from "/worker/util.js";
import { PaidIntoFigure, PayeeChoice } from "./worker-payee.js";
import { barChart } from "./chart.js";
import { portalJSON } from "./portal-json.js";

const LOG_LENGTH = 20;
const GPU_CHOICE_KEY = "dcp.worker.useGPU"; // "off" once the person turned the GPU off
const CPU_USE_KEY = "dcp.worker.cpuUse"; // the "CPU use" fraction picked in this browser
const MIN_WAGE_KEY = "dcp.worker.minWage"; // the minimum wage typed in this browser
const PAYEE_KEY = "dcp.worker.paymentAddress"; // the address "Pay into" picked in this browser

const root = document.getElementById("worker");
const startButton = root.querySelector("[data-worker-start]");
const stopButton = root.querySelector("[data-worker-stop]");
const coresSelect = root.querySelector("[data-worker-cores]");
const cpuUseSelect = root.querySelector("[data-worker-cpu-use]");
const minWageField = root.querySelector("[data-worker-min-wage]");
const gpuSwitch = root.querySelector("[data-worker-gpu]");
const gpuLine = root.querySelector('[data-testid="worker-gpu"]');
const groupsField = root.querySelector("[data-worker-groups]");
const publicJobsBox = root.querySelector("[data-worker-public]");
const groupsProblem = root.querySelector("[data-worker-groups-problem]");
const statusLine = root.querySelector('[data-testid="worker-status"]');
const pacingLine = root.querySelector('[data-testid="worker-pacing"]');
const slicesOutput = document.querySelector('[data-testid="slices-computed"]');
const creditsOutput = document.querySelector('[data-testid="credits-earned"]');
const inFlightOutput = document.querySelector('[data-testid="in-flight"]');
const logList = document.querySelector('[data-testid="worker-log"]');

const startingSlices = Number.parseInt(root.dataset.slicesComputed, 10) || 0;
const startingCredits = readCredits(root.dataset.creditsEarned);
let reconnectCountdown = null;

let pool = null; // the sandboxes: made on the first Start, shared by every supervisor after
let supervisor = null; // the live one: made on Start, retired when "Pay into" changes
let paying = ""; // the address it pays into
let lastPaid = ""; // its slices and credits when the "Paid into" figure was last updated
let joined = { groups: [], leavePublicGroup: false }; // the compute groups, as last applied
const retired = { slices: 0, credits: "0", byAddress: new Map() }; // what retired ones earned

function readCredits(text) {
  try {
    return formatCredits(parseCredits(text || "0"));
  } catch {
    return "0";
  }
}

function absoluteURL(path) {
  return new URL(path, location.href).href;
}

function socketURL(path) {
  const url = new URL(path, location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}

function fillCoresSelect() {
  const threads = Math.max(1, navigator.hardwareConcurrency || 1);
  for (let count = 1; count <= threads; count += 1) {
    coresSelect.add(new Option(String(count), String(count)));
  }
  coresSelect.value = String(Math.max(1, threads - 1));
}

/** What this browser remembers under `key`: null if nothing (or storage is refused). */
function remembered(key) {
  try {
    return localStorage.getItem(key);
  } catch {
    return null; // storage refused (privacy settings): the defaults
  }
}

/** Remembers `value` under `key` ("" forgets it). */
function remember(key, value) {
  try {
    if (value) localStorage.setItem(key, value);
    else localStorage.removeItem(key);
  } catch {
    // storage refused: the choice lasts as long as the page
  }
}

/** Whether the person wants the GPU used: yes unless they turned it off in this browser. */
function gpuChosen() {
  return remembered(GPU_CHOICE_KEY) !== "off";
}

/** Picks the "CPU use" this browser remembers, when it is one of the select's. */
function restoreCPUUse() {
  const saved = remembered(CPU_USE_KEY);
  if ([...cpuUseSelect.options].some((option) => option.value === saved)) cpuUseSelect.value = saved;
}

/** The share of time the cores compute (the supervisor's duty cycle), 0.25 to 1. */
function cpuUse() {
  return Number(cpuUseSelect.value);
}

/** "GPU: <adapter>" or "GPU: none found (why)"; the switch only where there is a GPU. */
function showGPU({ found, description, reason }) {
  gpuLine.textContent = found ? `GPU: ${description}` : `GPU: none found${reason ? ` (${reason})` : ""}`;
  gpuSwitch.disabled = !found;
  gpuSwitch.checked = found && gpuChosen();
}

/** The compute groups typed in the field: [{joinKey, joinSecret}], or a line that is not KEY,SECRET. */
function parseGroups(text) {
  const groups = [];
  for (const [index, line] of text.split("\n").entries()) {
    if (!line.trim()) continue;
    const [joinKey, joinSecret, ...rest] = line.split(",").map((part) => part.trim());
    if (!joinKey || !joinSecret || rest.length) return { problem: `line ${index + 1} is not KEY,SECRET` };
    groups.push({ joinKey, joinSecret });
  }
  return { groups };
}

/** Joins what the field says (with a new hello when connected); a malformed line joins nothing. */
function applyGroups() {
  const { groups, problem } = parseGroups(groupsField.value);
  groupsProblem.hidden = !problem;
  groupsProblem.textContent = problem ?? "";
  if (problem) return;
  joined = { groups, leavePublicGroup: !publicJobsBox.checked };
  supervisor?.setComputeGroups(joined.groups, { leavePublicGroup: joined.leavePublicGroup });
}

function shortJob(jobId) {
  const text = String(jobId);
  return text.length > 14 ? `${text.slice(0, 8)}…` : text;
}

// What the status line says in each state of the supervisor (STATES), given its detail.
const STATUS_TEXT = new Map([
  [STATES.STOPPED, () => "Stopped"],
  [STATES.CONNECTING, () => "Connecting…"],
  [STATES.WAITING, () => "Waiting for work"],
  [STATES.COMPUTING, ({ slices, jobs }) => {
    const what = jobs.length === 1 ? shortJob(jobs[0]) : plural(jobs.length, "job");
    return `Computing ${plural(slices, "slice")} of ${what}`;
  }],
  [STATES.RECONNECTING, ({ retryAt }) => {
    const seconds = Math.max(0, Math.ceil((retryAt - Date.now()) / 1000));
    return `Reconnecting in ${seconds} s…`;
  }],
  [STATES.ERROR, ({ message }) => message || "Stopped after an error"],
]);

function statusText(state, detail) {
  const text = STATUS_TEXT.get(state);
  return text ? text(detail) : state;
}

function showState(state, detail) {
  clearInterval(reconnectCountdown);
  reconnectCountdown = null;
  statusLine.dataset.state = state;
  statusLine.textContent = statusText(state, detail);
  if (state === STATES.RECONNECTING) {
    reconnectCountdown = setInterval(() => { statusLine.textContent = statusText(state, detail); }, 1000);
  }
  const started = isStarted(state);
  startButton.disabled = started;
  stopButton.disabled = !started;
  showPacing(supervisor?.pacing);
}

function isStarted(state) {
  return state !== STATES.STOPPED && state !== STATES.ERROR;
}

/** The tab's totals: the user's earlier ones, the retired supervisors' and the live one's. */
function showStats({ slicesComputed, creditsEarned, inFlight }) {
  slicesOutput.textContent = String(startingSlices + retired.slices + slicesComputed);
  creditsOutput.textContent = addCredits(startingCredits, retired.credits, creditsEarned);
  if (inFlightOutput) inFlightOutput.textContent = String(inFlight);
  const paid = `${slicesComputed} ${creditsEarned}`;
  if (paid !== lastPaid) {
    lastPaid = paid; // results were accepted: the payee's balance moved
    paidInto.update(earnedInto(paying));
  }
}

/** The pacing line: why the started supervisor computes less than it was asked to, while it
 * does (a supervisor without pacing never holds back). */
function showPacing(pacing) {
  const started = supervisor !== null && isStarted(supervisor.state);
  const reason = started && pacing?.holdingBack ? pacing.reason || "holding back" : "";
  pacingLine.hidden = !reason;
  pacingLine.textContent = reason;
}

function addLogLine(message, level = "info") {
  logList.querySelector(".empty")?.remove();
  const item = document.createElement("li");
  item.className = level;
  const time = document.createElement("time");
  const now = new Date();
  time.dateTime = now.toISOString();
  time.textContent = now.toLocaleTimeString();
  const text = document.createElement("span");
  text.textContent = message;
  item.append(time, text);
  logList.prepend(item);
  while (logList.children.length > LOG_LENGTH) logList.lastElementChild.remove();
}

/** The credits this tab has earned into `address` since it was opened. */
function earnedInto(address) {
  const before = retired.byAddress.get(address.toLowerCase()) ?? "0";
  const paysIt = supervisor !== null && address.toLowerCase() === paying.toLowerCase();
  const live = paysIt ? supervisor.stats.creditsEarned : "0";
  return addCredits(before, live);
}

/** A supervisor paying into the address "Pay into" names, with the controls' settings. */
function newSupervisor() {
  const cores = Number(coresSelect.value);
  const sandboxURL = absoluteURL(root.dataset.sandboxUrl);
  const pyodideURL = absoluteURL(root.dataset.pyodideUrl);
  pool ??= new IsolatedPool({ size: cores, sandboxURL, pyodideURL });
  let made = null;
  // A retired supervisor's last words (its Stop) are its own: the figures follow the live one.
  const whileLive = (show) => (...values) => { if (made === supervisor) show(...values); };
  made = new Supervisor({
    socketURL: socketURL(root.dataset.socketPath),
    sandboxURL,
    pyodideURL,
    pool,
    cores,
    gpu: gpuChosen(),
    computeGroups: joined.groups,
    leavePublicGroup: joined.leavePublicGroup,
    paymentAddress: payees.payee.address,
    dutyCycle: cpuUse(),
    minWage: minWageField.value.trim(),
    onState: whileLive(showState),
    onStats: whileLive(showStats),
    onPacing: whileLive(showPacing),
    log: addLogLine,
  });
  return made;
}

function start() {
  if (!payees.check()) return;
  if (!supervisor) {
    supervisor = newSupervisor();
    paying = payees.payee.address;
    lastPaid = "";
    window.dcpSupervisor = supervisor; // for end-to-end tests and the curious
  }
  supervisor.start();
}

/** Stops the live supervisor for good, keeping what it earned in the tab's totals. */
function retire() {
  supervisor.stop();
  const { slicesComputed, creditsEarned } = supervisor.stats;
  retired.slices += slicesComputed;
  retired.credits = addCredits(retired.credits, creditsEarned);
  const key = paying.toLowerCase();
  retired.byAddress.set(key, addCredits(retired.byAddress.get(key) ?? "0", creditsEarned));
  supervisor = null;
}

/** The minimum wage changed: remembered, and a started worker starts again with it (the
 * scheduler reads it from the hello; a malformed one is refused there, and said in the log). */
function changeMinWage() {
  remember(MIN_WAGE_KEY, minWageField.value.trim());
  const wasStarted = supervisor !== null && isStarted(supervisor.state);
  if (supervisor) retire();
  addLogLine(`Minimum wage ${minWageField.value.trim() || "none"}${wasStarted ? ": starting again with it" : ""}`);
  if (wasStarted) start();
}

/** "Pay into" changed: the figure follows it, and a started worker says hello again. */
function payInto(payee) {
  const wasStarted = supervisor !== null && isStarted(supervisor.state);
  if (supervisor) retire();
  paidInto.follow(payee, earnedInto(payee.address));
  addLogLine(`Pay into ${payee.label}${wasStarted ? ": starting again with it" : ""}`);
  if (wasStarted) start();
}

fillCoresSelect();
restoreCPUUse();
minWageField.value = remembered(MIN_WAGE_KEY) ?? "";
minWageField.addEventListener("change", changeMinWage);
const paidInto = new PaidIntoFigure(document.querySelector("[data-worker-paid-into]"));
const payees = new PayeeChoice(root, {
  saved: remembered(PAYEE_KEY),
  save: (address) => remember(PAYEE_KEY, address),
  onChange: payInto,
});
paidInto.follow(payees.payee, "0");
creditsOutput.textContent = startingCredits;
slicesOutput.textContent = String(startingSlices);

startButton.addEventListener("click", start);
stopButton.addEventListener("click", () => supervisor?.stop());
coresSelect.addEventListener("change", () => supervisor?.setCores(Number(coresSelect.value)));
cpuUseSelect.addEventListener("change", () => {
  remember(CPU_USE_KEY, cpuUseSelect.value);
  supervisor?.setDutyCycle?.(cpuUse()); // a supervisor without pacing computes at full use
});
groupsField.addEventListener("change", applyGroups);
publicJobsBox.addEventListener("change", applyGroups);
gpuSwitch.addEventListener("change", () => {
  remember(GPU_CHOICE_KEY, gpuSwitch.checked ? "on" : "off");
  supervisor?.setGPU(gpuSwitch.checked);
});
findGPU().then(showGPU);
showState(STATES.STOPPED, {});

// --- Earnings over time: the charts under the figures (drawn by chart.js) ---------------------
// What the user's accounts were paid for results, from /portal/worker/history.json: the last
// 24 hours by the hour or the last 30 days by the day, fetched again every 30 s while started.

const HISTORY_REFRESH_MS = 30000;
const historyCard = document.querySelector("[data-worker-history]");
const historyNote = historyCard.querySelector("[data-history-note]");
const historyNoteText = historyNote.textContent;
let historyPeriod = "day";

async function loadHistory() {
  const period = historyPeriod;
  const url = new URL(historyCard.dataset.historyUrl, location.href);
  url.searchParams.set("period", period);
  try {
    const history = await portalJSON(url);
    if (period !== historyPeriod) return; // another period was picked meanwhile: its own fetch draws
    drawHistory(history);
    historyCard.classList.remove("stale");
    historyNote.textContent = historyNoteText;
  } catch (error) {
    historyCard.classList.add("stale"); // keep the last charts; the next refresh tries again
    historyNote.textContent = `The charts could not be refreshed: ${error.message}.`;
  }
}

/** Two bar charts of a history document: credits earned and slices paid for, per bucket. */
function drawHistory(history) {
  const width = history.bucket_seconds * 1000;
  const times = history.buckets.map((bucket) => Date.parse(bucket.start));
  const per = history.period === "day" ? "hour" : "day";
  const common = {
    start: times[0],
    end: times[times.length - 1] + width,
    barWidth: width,
    empty: history.message,
  };
  const slot = (name) => historyCard.querySelector(`[data-history-chart="${name}"]`);
  barChart(slot("credits"), {
    ...common,
    title: `Credits earned per ${per}`,
    yLabel: "credits",
    series: [{
      label: "credits",
      points: history.buckets.map((bucket, n) => [times[n], Number(bucket.credits)]),
      total: `${history.total.credits} credits`,
    }],
  });
  barChart(slot("results"), {
    ...common,
    title: `Slices computed per ${per}`,
    yLabel: "slices",
    series: [{
      label: "slices",
      points: history.buckets.map((bucket, n) => [times[n], bucket.results]),
      total: `${history.total.results} slices`,
    }],
  });
}

/** The "24 hours" and "30 days" buttons: one is pressed, and its period is drawn. */
function showHistoryPeriod(period) {
  historyPeriod = period;
  for (const button of historyCard.querySelectorAll("[data-history-period]")) {
    button.setAttribute("aria-pressed", String(button.dataset.historyPeriod === period));
  }
  loadHistory();
}

for (const button of historyCard.querySelectorAll("[data-history-period]")) {
  button.addEventListener("click", () => showHistoryPeriod(button.dataset.historyPeriod));
}
setInterval(() => {
  if (supervisor !== null && isStarted(supervisor.state)) loadHistory();
}, HISTORY_REFRESH_MS);
loadHistory();
