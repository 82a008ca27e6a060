/*
 * Pacing: how much of the machine a worker takes, so that it computes on spare cycles only.
 * Pure: it is told slice durations, the battery's state and the time, and it answers how many
 * cores may take slices and how long a core rests after a slice. supervisor.js keeps the clock,
 * the timers and the cores.
 *
 *   const pacing = new Pacing({ cores: 4, dutyCycle: 0.5 });
 *   pacing.noteSlice({ job: "j1", ms: 820, now });  // after each slice that gave a result
 *   pacing.setOnBattery(true);                       // the battery's chargingchange
 *   pacing.noteTime({ now, idle: true });            // now and then
 *   pacing.activeCores;  pacing.restMs(820);  pacing.state;
 *
 * Duty cycle d (a fraction from MIN_DUTY_CYCLE to 1): after a slice that ran L ms, its core rests
 * L*(1-d)/d ms before it takes another, so each core computes at most a fraction d of the time.
 *
 * A busy machine. Each job's pace is the median of its last PACE_WINDOW slices here. A slice
 * that takes SLOW_RATIO times its job's pace or more is slow; SLOW_STREAK slow slices in a row
 * (of any jobs, each against its own pace) mean that something else keeps the machine busy, so
 * the worker holds back one step more, up to MAX_BUSY_STEPS: each step is one core fewer (down
 * to 1) and a duty cycle BUSY_DUTY_STEP lower (of the chosen one). RECOVER_STREAK slices in a
 * row at their pace take one step back. Slow slices stay out of a job's pace, so a machine that
 * stays busy keeps the worker held back, and one outlier (a fresh sandbox's first slice) changes
 * nothing. After IDLE_RELEASE_MS with no slice held there is nothing left to compare: the hold
 * is let go.
 *
 * A battery. While the machine runs on battery (not charging): at most half the cores (at
 * least 1) and a duty cycle of at most BATTERY_DUTY_CYCLE.
 */

export const MIN_DUTY_CYCLE = 0.1;
export const SLOW_RATIO = 1.5;
export const SLOW_STREAK = 3;
export const RECOVER_STREAK = 3;
export const MAX_BUSY_STEPS = 3;
export const BUSY_DUTY_STEP = 0.25;
export const BATTERY_DUTY_CYCLE = 0.5;
export const IDLE_RELEASE_MS = 60_000;
const PACE_WINDOW = 9; // a job's recent slices, whose median is its pace
const MIN_PACE_SLICES = 5; // slices of a job before its pace is trusted
const PACE_FLOOR_MS = 10; // shorter slices are compared as if they took this long (timer noise)
const JOBS_PACED = 32; // jobs whose pace is kept (the least recently seen go first)

/** The duty cycle `value`, else a TypeError that says what a duty cycle is. */
export function checkDutyCycle(value) {
  if (typeof value !== "number" || !(value >= MIN_DUTY_CYCLE && value <= 1)) {
    throw new TypeError(
      `dutyCycle is the share of each core's time spent computing, a number from ${MIN_DUTY_CYCLE} to 1, `
        + `not ${shown(value)}`,
    );
  }
  return value;
}

/** A value as a person reads it in an error message: 0.05, "0.5", null, undefined. */
function shown(value) {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return typeof value === "bigint" ? `${value}n` : String(value); // JSON refuses these
  }
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

function roundTo(value, places) {
  const scale = 10 ** places;
  return Math.round(value * scale) / scale;
}

export class Pacing {
  #dutyCycle;
  #cores;
  #paces = new Map(); // job id -> its recent slice durations (ms), oldest first
  #slowRatios = []; // the current streak of slow slices: how much slower each ran
  #atPaceStreak = 0;
  #busySteps = 0;
  #busyRatio = 0; // how much slower the slices ran that made the last step
  #onBattery = false;
  #idleSince = null;

  constructor({ cores = 1, dutyCycle = 1 } = {}) {
    this.#dutyCycle = checkDutyCycle(dutyCycle);
    this.#cores = Math.max(1, Math.floor(cores));
  }

  /** The chosen duty cycle (a TypeError for anything but a number from 0.1 to 1). */
  setDutyCycle(fraction) {
    this.#dutyCycle = checkDutyCycle(fraction);
  }

  setCores(cores) {
    this.#cores = Math.max(1, Math.floor(cores));
  }

  setOnBattery(onBattery) {
    this.#onBattery = Boolean(onBattery);
  }

  get dutyCycle() {
    return this.#dutyCycle;
  }

  get cores() {
    return this.#cores;
  }

  /** The duty cycle in force now: the chosen one, lowered while holding back. */
  get activeDutyCycle() {
    let fraction = this.#dutyCycle * (1 - BUSY_DUTY_STEP * this.#busySteps);
    if (this.#onBattery) fraction = Math.min(fraction, BATTERY_DUTY_CYCLE);
    return roundTo(fraction, 3);
  }

  /** How many cores may compute now (resting ones included). */
  get activeCores() {
    let cores = Math.max(1, this.#cores - this.#busySteps);
    if (this.#onBattery) cores = Math.min(cores, Math.max(1, Math.floor(this.#cores / 2)));
    return cores;
  }

  get holdingBack() {
    return this.#onBattery || this.#busySteps > 0;
  }

  /** Why the worker holds back, for a person ("" when it does not). */
  get reason() {
    const reasons = [];
    if (this.#onBattery) reasons.push("on battery");
    if (this.#busySteps > 0) {
      reasons.push(`slices run ${this.#busyRatio.toFixed(1)}× slower than their recent pace (the machine is busy)`);
    }
    return reasons.length ? `holding back: ${reasons.join(", and ")}` : "";
  }

  /** {dutyCycle, activeDutyCycle, cores, activeCores, holdingBack, reason}: a plain object. */
  get state() {
    return {
      dutyCycle: this.#dutyCycle,
      activeDutyCycle: this.activeDutyCycle,
      cores: this.#cores,
      activeCores: this.activeCores,
      holdingBack: this.holdingBack,
      reason: this.reason,
    };
  }

  /** How long a core rests after a slice that ran `sliceMs` ms, at the duty cycle in force. */
  restMs(sliceMs) {
    const fraction = this.activeDutyCycle;
    return fraction >= 1 ? 0 : (Math.max(0, sliceMs) * (1 - fraction)) / fraction;
  }

  /** A slice of `job` gave its result after `ms` ms: compares it with the job's pace. */
  noteSlice({ job, ms, now }) {
    this.noteTime({ now, idle: false });
    const pace = this.#paceOf(job);
    const ratio = pace.length >= MIN_PACE_SLICES ? ms / Math.max(PACE_FLOOR_MS, median(pace)) : 0;
    if (ratio >= SLOW_RATIO) {
      this.#onSlowSlice(ratio);
      return;
    }
    pace.push(ms);
    if (pace.length > PACE_WINDOW) pace.shift();
    if (ratio > 0) this.#onSliceAtPace();
  }

  /** The time passes: after IDLE_RELEASE_MS idle (no slice held) a hold for a busy machine ends. */
  noteTime({ now, idle }) {
    if (!idle) {
      this.#idleSince = null;
      return;
    }
    this.#idleSince ??= now;
    if (this.#busySteps > 0 && now - this.#idleSince >= IDLE_RELEASE_MS) {
      this.#busySteps = 0;
      this.#slowRatios = [];
      this.#atPaceStreak = 0;
    }
  }

  #paceOf(job) {
    const pace = this.#paces.get(job) ?? [];
    this.#paces.delete(job); // re-inserted last: the map's order is the order jobs were seen
    this.#paces.set(job, pace);
    if (this.#paces.size > JOBS_PACED) this.#paces.delete(this.#paces.keys().next().value);
    return pace;
  }

  #onSlowSlice(ratio) {
    this.#atPaceStreak = 0;
    this.#slowRatios.push(ratio);
    if (this.#slowRatios.length < SLOW_STREAK) return;
    this.#busyRatio = median(this.#slowRatios);
    this.#busySteps = Math.min(MAX_BUSY_STEPS, this.#busySteps + 1);
    this.#slowRatios = [];
  }

  #onSliceAtPace() {
    this.#slowRatios = [];
    this.#atPaceStreak += 1;
    if (this.#busySteps === 0 || this.#atPaceStreak < RECOVER_STREAK) return;
    this.#busySteps -= 1;
    this.#atPaceStreak = 0;
  }
}
