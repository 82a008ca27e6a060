/*
 * What the worker sends in batches rather than one by one: results and errors (one `result`
 * message per job, when its task is done or RESULT_BATCH_MS after the batch's first entry, split
 * only to fit a frame), progress (the slices that reported some, every PROGRESS_INTERVAL_MS:
 * it extends their leases) and console lines (at most CONSOLE_LINES_PER_SECOND, the rest summed
 * up in one "… N lines dropped" line per job).
 *
 * A result too big for a frame of its own is never sent: the slice is reported as failed with
 * ResultTooLarge instead, since a frame over MAX_FRAME_BYTES closes the socket, and the slice
 * would go back to the queue to be computed, and sent, again and again.
 *
 * A result's `gpuMs` (the GPU time its sandbox measured, when the slice used the GPU) goes out
 * as the scheduler's `gpu_ms`, only when it is a finite number of at least zero: the scheduler
 * refuses a whole frame whose `gpu_ms` is not.
 *
 *   const outbox = new Outbox({ connection, log });
 *   outbox.addResult(jobId, { slice, value, ms, gpuMs });  outbox.addError(jobId, slice, error);
 *   outbox.flush(jobId);  outbox.sendDue();  // the second on a timer and on every sandbox event
 */

import {
  MAX_CONSOLE_CHARS,
  MAX_ERROR_MESSAGE_CHARS,
  MAX_ERROR_NAME_CHARS,
  MAX_FRAME_BYTES,
  MAX_TRACEBACK_CHARS,
  WORKER_SENDS,
} from "./protocol.js";
import { clip, formatBytes, plural } from "./util.js";

const RESULT_BATCH_MS = 250;
const PROGRESS_INTERVAL_MS = 2_000;
const CONSOLE_WINDOW_MS = 1_000;
const CONSOLE_LINES_PER_SECOND = 20;
// A result frame stays this far under the scheduler's limit: room for its envelope, and to spare.
const RESULT_FRAME_MARGIN_BYTES = 64 * 1024;
const FRAME_BYTES_BUDGET = MAX_FRAME_BYTES - RESULT_FRAME_MARGIN_BYTES;

const utf8 = new TextEncoder();

function fitsInFrame(text) {
  // UTF-8 takes at most 3 bytes per UTF-16 unit: encode only when that bound is too high.
  return text.length * 3 <= FRAME_BYTES_BUDGET || utf8.encode(text).length <= FRAME_BYTES_BUDGET;
}

/** A slice error as the scheduler's schema takes it: clipped to its field limits. */
function errorEntry(slice, error) {
  return {
    slice,
    name: String(error.name ?? "Error").slice(0, MAX_ERROR_NAME_CHARS),
    message: clip(String(error.message ?? ""), MAX_ERROR_MESSAGE_CHARS),
    traceback: String(error.traceback ?? "").slice(-MAX_TRACEBACK_CHARS), // the end says most
  };
}

/** A slice result as the scheduler's schema takes it: `gpuMs` as `gpu_ms`, when it is one. */
function resultEntry({ slice, value, ms, gpuMs }) {
  const entry = { slice, value, ms };
  if (typeof gpuMs === "number" && Number.isFinite(gpuMs) && gpuMs >= 0) entry.gpu_ms = gpuMs;
  return entry;
}

/** The same batch split in two halves (results and errors each), to fit smaller frames. */
function halves(results, errors) {
  const resultsHalf = Math.ceil(results.length / 2);
  const errorsHalf = Math.floor(errors.length / 2);
  return [
    [results.slice(0, resultsHalf), errors.slice(0, errorsHalf)],
    [results.slice(resultsHalf), errors.slice(errorsHalf)],
  ];
}

function tooLargeError({ slice, value }) {
  const bytes = utf8.encode(JSON.stringify(value)).length;
  return { slice, name: "ResultTooLarge", traceback: "",
           message: `the result of slice ${slice} is ${formatBytes(bytes)} of JSON; a slice result must fit in `
             + `one ${formatBytes(MAX_FRAME_BYTES)} message (${formatBytes(FRAME_BYTES_BUDGET)} of JSON)` };
}

export class Outbox {
  #connection;
  #log;
  #batches = new Map(); // job id -> {results, errors, since}: finished, not yet sent
  #progressed = new Map(); // job id -> Set of slice numbers that reported progress
  #lastProgressSentAt = 0;
  #console = new ConsoleWindow();

  /**
   * @param {object} options
   * @param {Connection} options.connection where the messages go (see connection.js)
   * @param {function} options.log (message, level) for the page's event log
   */
  constructor({ connection, log }) {
    this.#connection = connection;
    this.#log = log;
  }

  /** A new socket: progress is due one interval from now. */
  restartProgressClock() {
    this.#lastProgressSentAt = Date.now();
  }

  addResult(jobId, entry) {
    this.#batchFor(jobId).results.push(resultEntry(entry));
  }

  addError(jobId, slice, error) {
    this.#batchFor(jobId).errors.push(errorEntry(slice, error));
  }

  /** Sends one job's finished slices now; true if a batch went out (capacity was freed). */
  flush(jobId) {
    const batch = this.#batches.get(jobId);
    this.#batches.delete(jobId);
    if (!batch || !this.#connection.isOpen) return false;
    this.#sendResults(jobId, batch.results, batch.errors);
    return true;
  }

  flushAll() {
    for (const jobId of [...this.#batches.keys()]) this.flush(jobId);
  }

  /** Sends result batches older than RESULT_BATCH_MS, progress and console summaries; true if
   * any results went out. Called by a timer and on every sandbox event (timers of hidden tabs
   * are throttled). */
  sendDue() {
    if (!this.#connection.isOpen) return false;
    const now = Date.now();
    let sent = false;
    for (const [jobId, batch] of [...this.#batches]) {
      if (now - batch.since >= RESULT_BATCH_MS) sent = this.flush(jobId) || sent;
    }
    if (now - this.#lastProgressSentAt >= PROGRESS_INTERVAL_MS) this.#sendProgress(now);
    this.#sendDroppedLines(this.#console.roll(now));
    return sent;
  }

  /** Notes that a slice reported progress: it goes out with the next progress message. */
  noteProgress(jobId, slice) {
    let slices = this.#progressed.get(jobId);
    if (!slices) this.#progressed.set(jobId, (slices = new Set()));
    slices.add(slice);
  }

  /** A slice ended: its lease needs no more extending. */
  forgetProgress(jobId, slice) {
    this.#progressed.get(jobId)?.delete(slice);
  }

  /** Forwards a console line of a slice, unless this second's quota is spent. */
  console(jobId, slice, level, message) {
    this.#sendDroppedLines(this.#console.roll(Date.now()));
    if (!this.#console.admit(jobId, slice)) return;
    this.#connection.send({ type: WORKER_SENDS.CONSOLE, job: jobId, slice, level,
                            message: clip(String(message), MAX_CONSOLE_CHARS) });
  }

  /** Forgets everything unsent of one job (it was cancelled). */
  dropJob(jobId) {
    this.#batches.delete(jobId);
    this.#progressed.delete(jobId);
  }

  /** Forgets everything unsent (the connection is gone). */
  clear() {
    this.#batches.clear();
    this.#progressed.clear();
    this.#console.clear();
  }

  #batchFor(jobId) {
    let batch = this.#batches.get(jobId);
    if (!batch) this.#batches.set(jobId, (batch = { results: [], errors: [], since: Date.now() }));
    return batch;
  }

  /** Sends results and errors of one job as one `result` message, or halves that fit a frame. */
  #sendResults(jobId, results, errors) {
    const entries = results.length + errors.length;
    const id = this.#connection.requestId();
    const text = JSON.stringify({ type: WORKER_SENDS.RESULT, id, job: jobId, results, errors });
    if (!fitsInFrame(text)) {
      if (entries > 1) {
        for (const [someResults, someErrors] of halves(results, errors)) this.#sendResults(jobId, someResults, someErrors);
        return;
      }
      if (results.length === 1) {
        this.#sendResults(jobId, [], [tooLargeError(results[0])]);
        return;
      }
      // A single error is clipped to the schema's limits, which always fit in a frame.
    }
    this.#connection.sendAwaitingAck(id, text, { job: jobId, count: entries });
    const failed = errors.length ? ` (${errors.length} failed)` : "";
    this.#log(`Sent ${plural(entries, "result")} of job ${jobId}${failed}`);
  }

  #sendProgress(now) {
    this.#lastProgressSentAt = now;
    for (const [jobId, slices] of this.#progressed) {
      if (slices.size > 0) {
        this.#connection.send({ type: WORKER_SENDS.PROGRESS, job: jobId, slices: [...slices].sort((a, b) => a - b) });
      }
    }
    this.#progressed.clear();
  }

  #sendDroppedLines(dropped) {
    for (const [jobId, { count, slice }] of dropped) {
      this.#connection.send({ type: WORKER_SENDS.CONSOLE, job: jobId, slice, level: "error",
                              message: `… ${count} lines dropped` });
    }
  }
}

/** The console rate limit: CONSOLE_LINES_PER_SECOND per one-second window, for all jobs. */
class ConsoleWindow {
  #startedAt = 0;
  #sent = 0;
  #dropped = new Map(); // job id -> {count, slice}: lines over this window's quota

  /** Whether a line may go out now; counts it either way. */
  admit(jobId, slice) {
    if (this.#sent >= CONSOLE_LINES_PER_SECOND) {
      const dropped = this.#dropped.get(jobId) ?? { count: 0, slice };
      dropped.count += 1;
      dropped.slice = slice;
      this.#dropped.set(jobId, dropped);
      return false;
    }
    this.#sent += 1;
    return true;
  }

  /** Starts a new window once the last one is over; returns what that one dropped, by job.
   * Each "… N lines dropped" summary counts against the new window's quota. */
  roll(now) {
    if (now - this.#startedAt < CONSOLE_WINDOW_MS) return new Map();
    const dropped = this.#dropped;
    this.#startedAt = now;
    this.#sent = dropped.size;
    this.#dropped = new Map();
    return dropped;
  }

  clear() {
    this.#dropped.clear();
  }
}
