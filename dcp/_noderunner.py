# ruff: noqa: E501 (the JavaScript source keeps its own line lengths)
"""The node script that runs JavaScript work functions for local_exec.

It mirrors the browser sandbox (worker_static/sandbox.js): the source is a function expression
(`function (x) {...}`, `async (x) => ...`) or statements defining `work`; it runs in a `vm`
context whose globals are only `progress` and a `console` that reports lines of the slice. It
reads JSON lines from stdin (`{"type": "init", "source", "args"}`, then `{"type": "slice",
"slice", "datum"}`) and writes JSON lines: started, progress, console, result and error messages.
"""

from __future__ import annotations

__all__ = ["NODE_RUNNER"]

NODE_RUNNER = r"""
"use strict";
const vm = require("vm");
const readline = require("readline");

const PROGRESS_INTERVAL_MS = 50;
const send = (message) => process.stdout.write(JSON.stringify(message) + "\n");
let current = null; // {slice, problem, lastProgress}

function describe(value) {
  if (typeof value === "string") return value;
  if (value && typeof value === "object" && "stack" in value && "message" in value) {
    return value.stack || `${value.name}: ${value.message}`;
  }
  try {
    const json = JSON.stringify(value);
    if (json !== undefined) return json;
  } catch (error) {
    // fall through to String()
  }
  return String(value);
}

function parseProgress(value) {
  if (value === undefined || value === null) return { value: null };
  let number;
  if (typeof value === "number" || typeof value === "bigint") {
    number = Number(value);
  } else if (typeof value === "string") {
    const match = /^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)\s*(%?)\s*$/i.exec(value);
    if (!match) {
      return { problem: `progress() got ${JSON.stringify(value)}, which is neither a number nor a percentage such as '50%'` };
    }
    number = Number(match[1]) / (match[2] ? 100 : 1);
  } else {
    return { problem: `progress() takes a number from 0 to 1, a percentage such as '50%', or nothing; got ${typeof value}` };
  }
  if (!(number >= 0 && number <= 1)) {
    return { problem: `progress must be between 0 and 1 (0% and 100%); got ${String(value)}` };
  }
  return { value: number };
}

function progress(value) {
  const { problem } = parseProgress(value);
  if (problem) {
    if (current) current.problem = current.problem || problem;
    throw new RangeError(problem);
  }
  if (!current) return;
  const now = Date.now();
  if (now - current.lastProgress >= PROGRESS_INTERVAL_MS) {
    current.lastProgress = now;
    send({ type: "progress", slice: current.slice });
  }
}

const console_ = {};
const levels = { log: "log", info: "log", debug: "log", trace: "log", warn: "error", error: "error" };
for (const [method, level] of Object.entries(levels)) {
  console_[method] = (...values) => send({
    type: "console", slice: current ? current.slice : null, level,
    message: values.map(describe).join(" "),
  });
}

const context = vm.createContext({ progress, console: console_ });
const FILENAME = "<work function>";

function compileWork(source) {
  let work;
  try {
    work = vm.runInContext(`"use strict";\n(${source}\n);`, context, { filename: FILENAME });
  } catch (expressionError) {
    if (!expressionError || expressionError.name !== "SyntaxError") throw expressionError;
    try {
      work = vm.runInContext(`${source}\n;typeof work === "function" ? work : undefined;`,
                             context, { filename: FILENAME });
    } catch (statementsError) {
      throw statementsError && statementsError.name === "SyntaxError" ? expressionError : statementsError;
    }
  }
  if (typeof work !== "function") {
    throw new TypeError("the work function source is not a function: write function (datum, ...args) { ... }");
  }
  return work;
}

function errorReply(error) {
  if (error && typeof error === "object" && "message" in error) {
    return { type: "error", name: String(error.name || "Error"), message: String(error.message),
             traceback: String(error.stack || "") };
  }
  return { type: "error", name: "Error", message: describe(error), traceback: "" };
}

let job = null; // {source, args, work}

async function runSlice(message) {
  current = { slice: message.slice, problem: null, lastProgress: 0 };
  send({ type: "started", slice: message.slice });
  let reply;
  try {
    job.work = job.work || compileWork(job.source);
    const result = await job.work(message.datum, ...job.args);
    const encoded = JSON.stringify(result === undefined ? null : result);
    if (typeof encoded !== "string") {
      throw new TypeError(`result of slice ${message.slice} is not JSON-serialisable: a ${typeof result} has no JSON form`);
    }
    reply = { type: "result", value: JSON.parse(encoded) };
  } catch (error) {
    reply = errorReply(error);
  }
  if (reply.type === "result" && current.problem) {
    reply = { type: "error", name: "RangeError", message: current.problem, traceback: "" };
  }
  current = null;
  send({ ...reply, slice: message.slice });
}

let queue = Promise.resolve();
readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const message = JSON.parse(line);
  if (message.type === "init") {
    job = { source: message.source, args: message.args || [], work: null };
  } else if (message.type === "slice") {
    queue = queue.then(() => runSlice(message));
  }
});
"""
