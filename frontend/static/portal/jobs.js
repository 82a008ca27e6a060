// Jobs tab: while any job on the page is running, poll status.json every 2 s and redraw its
// progress bar, numbers, credits, GPU time and status in place; a confirmation before Cancel;
// a chart of a job's results and credits over time under its row, on demand.

import { lineChart } from "./chart.js";
import { portalJSON } from "./portal-json.js";

const POLL_MS = 2000;

const table = document.querySelector("[data-jobs]");
const liveNote = document.querySelector('[data-testid="jobs-live"]');
let timer = null;

function rows() {
  return Array.from(table.querySelectorAll("tr[data-job-id]"));
}

function runningIds() {
  return rows()
    .filter((row) => row.dataset.status === "running")
    .map((row) => row.dataset.jobId);
}

function statusURL(ids) {
  const url = new URL(table.dataset.statusUrl, location.href);
  ids.forEach((id) => url.searchParams.append("job", id));
  return url;
}

function redraw(row, job) {
  const bar = row.querySelector("progress");
  bar.max = Math.max(job.total, 1);
  bar.value = job.computed;
  row.querySelector("[data-computed]").textContent = job.computed;
  row.querySelector("[data-total]").textContent = job.total;
  row.querySelector('[data-testid="job-paid"]').textContent = job.paid;
  row.querySelector('[data-testid="job-escrow"]').textContent = job.escrow;
  const verification = row.querySelector('[data-testid="job-verification"]');
  if (verification) verification.textContent = job.verification;
  const pricing = row.querySelector('[data-testid="job-pricing"]');
  if (pricing && job.pricing) pricing.textContent = job.pricing;
  if (job.gpu_time) {
    row.querySelector("[data-gpu-time]").textContent = job.gpu_time;
    row.querySelector('[data-testid="job-gpu-time"]').hidden = false;
  }
  if (job.status === row.dataset.status) return;
  row.dataset.status = job.status;
  const badge = row.querySelector('[data-testid="job-status"]');
  badge.dataset.status = job.status;
  badge.textContent = job.status;
  if (job.status !== "running") {
    row.querySelector("[data-escrow-line]").hidden = true;
    row.querySelector("[data-cancel-form]")?.remove();
  }
}

async function poll() {
  timer = null;
  const ids = runningIds();
  if (!ids.length) {
    liveNote.hidden = true;
    return;
  }
  liveNote.hidden = false;
  try {
    const body = await portalJSON(statusURL(ids));
    const byId = new Map(body.jobs.map((job) => [job.id, job]));
    rows().forEach((row) => {
      const job = byId.get(row.dataset.jobId);
      if (job) redraw(row, job);
    });
    table.classList.remove("stale");
    liveNote.classList.remove("stale");
    liveNote.textContent = "Updating live";
  } catch (error) {
    // Keep the last figures and try again on the next tick.
    table.classList.add("stale");
    liveNote.classList.add("stale");
    liveNote.textContent = `Reconnecting… (${error.message})`;
  }
  schedule();
}

function schedule() {
  if (timer === null) timer = setTimeout(poll, POLL_MS);
}

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!form.hasAttribute("data-cancel-form")) return;
  const question = `Cancel job ${form.dataset.jobName}? Its unspent credits go back to the paying account.`;
  if (!window.confirm(question)) event.preventDefault();
});

if (table) {
  liveNote.hidden = !runningIds().length;
  schedule();
}

// --- A job's chart: its results per second and the credits it has paid (drawn by chart.js) ---
// "Chart" opens a row under the job's with two charts from its history.json, from its start to
// now (or its end), fetched again every 10 s while the job runs.

const CHART_REFRESH_MS = 10000;

function historyRow(row, toggle) {
  const detail = document.createElement("tr");
  detail.className = "job-history-row";
  detail.id = toggle.getAttribute("aria-controls");
  detail.dataset.historyFor = row.dataset.jobId;
  detail.dataset.historyUrl = toggle.dataset.historyUrl;
  const cell = detail.insertCell();
  cell.colSpan = row.cells.length;
  cell.innerHTML = `<div class="chart-pair">
      <div class="chart-slot" data-history-chart="rate"><p class="hint">Loading…</p></div>
      <div class="chart-slot" data-history-chart="cost"></div>
    </div>
    <p class="hint" data-history-note></p>`;
  return detail;
}

function toggleChart(toggle) {
  const row = toggle.closest("tr");
  const open = toggle.getAttribute("aria-expanded") === "true";
  toggle.setAttribute("aria-expanded", String(!open));
  toggle.textContent = open ? "Chart" : "Hide chart";
  if (open) {
    document.getElementById(toggle.getAttribute("aria-controls"))?.remove();
    return;
  }
  const detail = historyRow(row, toggle);
  row.after(detail);
  loadJobHistory(detail);
}

async function loadJobHistory(detail) {
  const note = detail.querySelector("[data-history-note]");
  try {
    const history = await portalJSON(new URL(detail.dataset.historyUrl, location.href));
    detail.dataset.status = history.status;
    drawJobHistory(detail, history);
    detail.classList.remove("stale");
    note.textContent = historyNote(history);
  } catch (error) {
    detail.classList.add("stale"); // keep the last charts; the next refresh tries again
    note.textContent = `The chart could not be loaded: ${error.message}.`;
  }
}

function historyNote(history) {
  const seconds = history.bucket_seconds;
  const every = seconds % 60 ? `${seconds} s` : seconds % 3600 ? `${seconds / 60} min` : `${seconds / 3600} h`;
  const live = history.status === "running" ? "; updated every 10 s while it runs" : "";
  return `${history.total.results} results paid, ${history.total.credits} credits; one point every ${every}, times in UTC${live}.`;
}

/** Results per second in each bucket (per hour for a job of days: hourly buckets or wider),
 * over the part of it the job lived, and the credits paid so far at each bucket's end. A running
 * job's last bucket has its rate drawn once it is half over: a rate over seconds says little. */
function jobSeries(history) {
  const width = history.bucket_seconds * 1000;
  const per = history.bucket_seconds >= 3600 ? "hour" : "second";
  const perMs = per === "hour" ? 3600000 : 1000;
  const created = Date.parse(history.created);
  const end = Date.parse(history.end);
  const rate = [];
  const paid = [[created, 0]];
  let sum = 0;
  for (const bucket of history.buckets) {
    const from = Math.max(Date.parse(bucket.start), created);
    const to = Math.min(Date.parse(bucket.start) + width, end);
    if (to <= from) continue;
    const young = history.status === "running" && to === end && to - from < width / 2;
    if (!young) rate.push([(from + to) / 2, bucket.results / ((to - from) / perMs)]);
    sum += Number(bucket.credits);
    paid.push([to, sum]);
  }
  return { created, end, per, rate, paid };
}

function drawJobHistory(detail, history) {
  const { created, end, per, rate, paid } = jobSeries(history);
  const common = { start: created, end, empty: history.message };
  const slot = (name) => detail.querySelector(`[data-history-chart="${name}"]`);
  lineChart(slot("rate"), {
    ...common,
    title: `Results per ${per}`,
    yLabel: per === "hour" ? "results / h" : "results / s",
    series: [{ label: `results per ${per}`, points: rate, total: `${history.total.results} results` }],
  });
  lineChart(slot("cost"), {
    ...common,
    title: "Credits paid so far",
    yLabel: "credits",
    series: [{ label: "credits paid", points: paid, total: `${history.total.credits} credits` }],
  });
}

/** Fetch the open charts of running jobs again (and once more for a job that just ended). */
function refreshCharts() {
  for (const detail of document.querySelectorAll("tr.job-history-row")) {
    const row = table.querySelector(`tr[data-job-id="${CSS.escape(detail.dataset.historyFor)}"]`);
    if (detail.dataset.status === "running" || row?.dataset.status === "running") loadJobHistory(detail);
  }
}

document.addEventListener("click", (event) => {
  const toggle = event.target.closest("[data-history-toggle]");
  if (toggle) toggleChart(toggle);
});

if (table) setInterval(refreshCharts, CHART_REFRESH_MS);
