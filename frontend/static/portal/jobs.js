// Jobs tab: while any job on the page is running, poll status.json every 2 s and redraw its
// progress bar, numbers, credits, GPU time and status in place; a confirmation before Cancel.

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
    const response = await fetch(statusURL(ids), {
      headers: { Accept: "application/json" },
      credentials: "same-origin",
      cache: "no-store",
    });
    if (response.redirected) throw new Error("signed out: reload the page");
    if (!response.ok) throw new Error(`the server answered ${response.status}`);
    const body = await response.json();
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
