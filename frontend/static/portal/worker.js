// Worker tab: Start/Stop, the cores selector, the "Use GPU" switch (remembered in this browser's
// localStorage), live totals, the status line and the event log.
// The work itself is done by the Supervisor (worker_static/supervisor.js) and its sandboxes;
// the credit arithmetic is the protocol's (worker_static/protocol.js).

import { addCredits, formatCredits, parseCredits } from "/worker/protocol.js";
import { findGPU, Supervisor, STATES } from "/worker/supervisor.js";
import { plural } from "/worker/util.js";

const LOG_LENGTH = 20;
const GPU_CHOICE_KEY = "dcp.worker.useGPU"; // "off" once the person turned the GPU off

const root = document.getElementById("worker");
const startButton = root.querySelector("[data-worker-start]");
const stopButton = root.querySelector("[data-worker-stop]");
const coresSelect = root.querySelector("[data-worker-cores]");
const gpuSwitch = root.querySelector("[data-worker-gpu]");
const gpuLine = root.querySelector('[data-testid="worker-gpu"]');
const groupsField = root.querySelector("[data-worker-groups]");
const publicJobsBox = root.querySelector("[data-worker-public]");
const groupsProblem = root.querySelector("[data-worker-groups-problem]");
const statusLine = root.querySelector('[data-testid="worker-status"]');
const slicesOutput = document.querySelector('[data-testid="slices-computed"]');
const creditsOutput = document.querySelector('[data-testid="credits-earned"]');
const inFlightOutput = document.querySelector('[data-testid="in-flight"]');
const logList = document.querySelector('[data-testid="worker-log"]');

const startingSlices = Number.parseInt(root.dataset.slicesComputed, 10) || 0;
const startingCredits = readCredits(root.dataset.creditsEarned);
let reconnectCountdown = null;

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

/** Whether the person wants the GPU used: yes unless they turned it off in this browser. */
function gpuChosen() {
  try {
    return localStorage.getItem(GPU_CHOICE_KEY) !== "off";
  } catch {
    return true; // storage refused (privacy settings): the default
  }
}

function rememberGPUChoice(on) {
  try {
    localStorage.setItem(GPU_CHOICE_KEY, on ? "on" : "off");
  } catch {
    // storage refused: the choice lasts as long as the page
  }
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
  supervisor.setComputeGroups(groups, { leavePublicGroup: !publicJobsBox.checked });
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
  const started = state !== STATES.STOPPED && state !== STATES.ERROR;
  startButton.disabled = started;
  stopButton.disabled = !started;
}

function showStats({ slicesComputed, creditsEarned, inFlight }) {
  slicesOutput.textContent = String(startingSlices + slicesComputed);
  creditsOutput.textContent = addCredits(startingCredits, creditsEarned);
  if (inFlightOutput) inFlightOutput.textContent = String(inFlight);
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

fillCoresSelect();
creditsOutput.textContent = startingCredits;
slicesOutput.textContent = String(startingSlices);

const supervisor = new Supervisor({
  socketURL: socketURL(root.dataset.socketPath),
  sandboxURL: absoluteURL(root.dataset.sandboxUrl),
  pyodideURL: absoluteURL(root.dataset.pyodideUrl),
  cores: Number(coresSelect.value),
  gpu: gpuChosen(),
  onState: showState,
  onStats: showStats,
  log: addLogLine,
});

startButton.addEventListener("click", () => supervisor.start());
stopButton.addEventListener("click", () => supervisor.stop());
coresSelect.addEventListener("change", () => supervisor.setCores(Number(coresSelect.value)));
groupsField.addEventListener("change", applyGroups);
publicJobsBox.addEventListener("change", applyGroups);
gpuSwitch.addEventListener("change", () => {
  rememberGPUChoice(gpuSwitch.checked);
  supervisor.setGPU(gpuSwitch.checked);
});
findGPU().then(showGPU);

// For end-to-end tests and the curious: the live supervisor of this tab.
window.dcpSupervisor = supervisor;
showState(STATES.STOPPED, {});
