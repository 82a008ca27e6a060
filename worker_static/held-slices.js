/*
 * Every slice the worker holds: handed to it in a task, not yet reported, returned or dropped.
 * A held slice is either queued (waiting for a free core) or computing (handed to the pool).
 *
 *   const held = new HeldSlices();
 *   held.addTask(taskMessage);  const record = held.nextQueued();  held.forget(record);
 */

/** A held slice: what the supervisor keeps of it until its outcome is sent. */
function sliceRecord({ job, slice, datum, task, timeoutMs }) {
  return {
    key: sliceKey(job.id, slice),
    job, // what the pool needs: {id, language, function, args}
    slice,
    datum,
    task, // {id, open: Set of its records not yet finished}
    timeoutMs, // the no-progress limit of this slice
    computing: false,
    dropped: false, // once set, the slice's outcome is ignored
    startedAt: 0,
  };
}

function sliceKey(jobId, slice) {
  return `${jobId}\u0000${slice}`;
}

/** The job of a `task` message as the pool runs it: it compiles a work function once per job id. */
function poolJob(job) {
  return {
    id: job.id,
    language: job.language ?? "python",
    source: job.source,
    args: job.args ?? [],
    packages: job.packages ?? [], // wheels in the portal's store, installed before the first slice
    pyodide: job.pyodide ?? [], // Pyodide's own packages, loaded by name
    fs: job.fs ?? null, // the job's files: {sha256, size} of a zip archive in the portal's store
  };
}

/** The no-progress limit of a task's slices in ms (undefined: the pool's default). */
function sliceTimeoutMs({ lease_seconds: leaseSeconds, progress_timeout: progressTimeout }) {
  // The job's progress timeout stops a stalled slice; the lease is only the server's backstop.
  const seconds = Number(progressTimeout) > 0 ? Number(progressTimeout) : Number(leaseSeconds);
  return seconds > 0 ? seconds * 1000 : undefined;
}

/** Whether a `task` message has what the worker needs to compute it. */
export function isWellFormedTask({ job, slices }) {
  return Boolean(job) && job.id !== undefined && Array.isArray(slices);
}

export class HeldSlices {
  #records = new Map(); // slice key -> record: every slice we hold
  #queue = []; // records waiting for a free core
  #computing = 0; // records handed to the pool

  get size() {
    return this.#records.size;
  }

  /** Slices queued or computing: what counts against the capacity the worker announces. */
  get busy() {
    return this.#computing + this.#queue.length;
  }

  get computing() {
    return this.#computing;
  }

  /** Holds the slices of a well-formed `task` message, except those already held. */
  addTask(message) {
    const job = poolJob(message.job);
    const timeoutMs = sliceTimeoutMs(message);
    const task = { id: message.task, open: new Set() };
    for (const { slice, datum } of message.slices) {
      // A slice re-dispatched to us while we still compute it stays as it is.
      if (this.#records.has(sliceKey(job.id, slice))) continue;
      const record = sliceRecord({ job, slice, datum, task, timeoutMs });
      task.open.add(record);
      this.#records.set(record.key, record);
      this.#queue.push(record);
    }
  }

  /** The next queued record, now counted as computing; null when none waits. */
  nextQueued() {
    const record = this.#queue.shift();
    if (!record) return null;
    record.computing = true;
    record.startedAt = performance.now();
    this.#computing += 1;
    return record;
  }

  /** Stops holding a record; its task no longer waits for it. */
  forget(record) {
    if (this.#records.get(record.key) === record) this.#records.delete(record.key);
    record.task.open.delete(record);
    if (record.computing) {
      record.computing = false;
      this.#computing -= 1;
    } else {
      const queued = this.#queue.indexOf(record);
      if (queued >= 0) this.#queue.splice(queued, 1);
    }
  }

  /** Drops held records matching `predicate` (their outcome will be ignored); returns them. */
  dropWhere(predicate) {
    const dropped = [...this.#records.values()].filter(predicate);
    for (const record of dropped) {
      record.dropped = true;
      this.forget(record);
    }
    return dropped;
  }

  /** The ids of the jobs of the held slices, each once. */
  jobs() {
    return [...new Set([...this.#records.values()].map((record) => record.job.id))];
  }

  /** Held slice numbers by job id. */
  slicesByJob() {
    const byJob = new Map();
    for (const record of this.#records.values()) {
      if (!byJob.has(record.job.id)) byJob.set(record.job.id, []);
      byJob.get(record.job.id).push(record.slice);
    }
    return byJob;
  }
}
