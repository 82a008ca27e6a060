/*
 * local_exec's worker process for JavaScript work functions: `node node_worker.mjs`.
 *
 * The work function runs in a `vm` context whose only globals are `progress`, `gpu` (gpu.mjs;
 * node has no WebGPU, so its calls say so) and a `console` that reports lines of the slice (slice.mjs holds the rules, shared with the browser sandbox).
 * It reads JSON lines on stdin ({"type": "init", "source", "args"}, then {"type": "slice",
 * "slice", "datum"}) and writes JSON lines on stdout: started, progress, console, result, error.
 */

import readline from "node:readline";
import vm from "node:vm";

import {
  WORK_FILENAME, clipConsoleLine, compileWorkFunction, consoleFor, errorReply, progressFunction,
  runSlice,
} from "./slice.mjs";
import { gpuHelpers } from "./gpu.mjs";

const PROGRESS_INTERVAL_MS = 50; // at most one progress message per interval
const send = (message) => process.stdout.write(`${JSON.stringify(message)}\n`);

let current = null; // the running slice: {slice, progressProblem, lastProgress}
let job = null; // {source, args, work}

function reportProgress(state, value) {
  const now = Date.now();
  if (now - state.lastProgress >= PROGRESS_INTERVAL_MS) {
    state.lastProgress = now;
    send({ type: "progress", slice: state.slice, value });
  }
}

const context = vm.createContext({
  progress: progressFunction(() => current, reportProgress),
  gpu: gpuHelpers(globalThis.navigator?.gpu ?? null),
  console: consoleFor((level, message) => send({
    type: "console", slice: current ? current.slice : null, level, message: clipConsoleLine(message),
  })),
});

function evaluate(body) {
  return vm.runInContext(`(function () {${body}\n})()`, context, { filename: WORK_FILENAME });
}

async function computeSlice(message) {
  current = { slice: message.slice, progressProblem: null, lastProgress: 0 };
  send({ type: "started", slice: message.slice });
  let reply;
  try {
    job.work ??= compileWorkFunction(job.source, evaluate);
    reply = await runSlice(job.work, job.args, message.slice, message.datum, current);
  } catch (error) {
    reply = errorReply(error); // the source did not compile
  }
  current = null;
  send({ ...reply, slice: message.slice });
}

let queue = Promise.resolve();
readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const message = JSON.parse(line);
  if (message.type === "init") {
    job = { source: message.source, args: message.args ?? [], work: null };
  } else if (message.type === "slice") {
    queue = queue.then(() => computeSlice(message));
  }
});
