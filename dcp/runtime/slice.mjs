/*
 * The slice runtime for JavaScript work functions: one ES module, imported by the browser
 * sandbox (worker_static/sandbox.js, served by the portal at /worker/runtime/slice.mjs) and by
 * local_exec's node worker (node_worker.mjs beside this file). The rules mirror slice.py:
 *
 * - The source is a function expression or declaration (`function (x) {...}`, `async (x) =>
 *   ...`), or statements that define a function named `work`. It is compiled once per job.
 * - A slice calls `work(datum, ...args)` and awaits what it returns; `undefined` becomes null.
 * - `progress(value)` takes a number from 0 to 1, a percentage string such as "50%", or nothing;
 *   an invalid value throws RangeError and fails the slice even if the work function catches it.
 * - Values travel in the value encoding (values.mjs beside this file, the twin of
 *   dcp/protocol/values.py): the datum and the arguments are decoded (bytes arrive as
 *   Uint8Array, blob references as the blob's bytes), and a result is encoded (a Uint8Array or
 *   ArrayBuffer may be returned).
 * - A result must have a JSON form; a failure comes back as error.name, message and stack.
 *
 * Replies: {type: "result", value} (value in the encoding) or {type: "error", name, message,
 * traceback}.
 */

import { decode, encodeJson } from "./values.mjs";

export const WORK_FILENAME = "<work function>";
export const MAX_CONSOLE_CHARS = 10_000; // one console line; a longer one is clipped

const { parse: parseJson, stringify: stringifyJson } = JSON;

/** How a console.log() argument reads as text. */
export function describe(value) {
  if (typeof value === "string") return value;
  if (value && typeof value === "object" && "stack" in value && "message" in value) {
    return value.stack || `${value.name}: ${value.message}`;
  }
  try {
    const json = stringifyJson(value);
    if (json !== undefined) return json;
  } catch {
    // fall through to String()
  }
  return String(value);
}

/** A console line cut to MAX_CONSOLE_CHARS, saying how long it was. */
export function clipConsoleLine(text) {
  if (text.length <= MAX_CONSOLE_CHARS) return text;
  const marker = `… (${text.length} characters)`;
  return `${text.slice(0, MAX_CONSOLE_CHARS - marker.length)}${marker}`;
}

/** console.log, .info, .debug, .trace, .warn, .error as one line each at level log or error. */
export function consoleFor(sendLine) {
  const levels = { log: "log", info: "log", debug: "log", trace: "log", warn: "error", error: "error" };
  const methods = {};
  for (const [method, level] of Object.entries(levels)) {
    methods[method] = (...values) => sendLine(level, values.map(describe).join(" "));
  }
  return methods;
}

/** Parses a progress() argument: {value} (0..1 or null) or {problem} (why it is invalid). */
export function parseProgress(value) {
  if (value === undefined || value === null) return { value: null };
  let number;
  if (typeof value === "number" || typeof value === "bigint") {
    number = Number(value);
  } else if (typeof value === "string") {
    const match = /^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)\s*(%?)\s*$/i.exec(value);
    if (!match) {
      return { problem: `progress() got ${stringifyJson(value)}, which is neither a number nor a percentage such as '50%'` };
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

/**
 * The `progress` global of JS work functions. `currentSlice()` is the running slice's state
 * (null while compiling): the first invalid value is kept on it as `progressProblem`; valid
 * values go to `report(state, value)`.
 */
export function progressFunction(currentSlice, report) {
  return function progress(value) {
    const { value: parsed, problem } = parseProgress(value);
    const state = currentSlice();
    if (problem) {
      if (state) state.progressProblem ??= problem;
      throw new RangeError(problem);
    }
    if (state) report(state, parsed);
  };
}

/**
 * Compiles a work function. `evaluate(body)` runs `body` as the body of a function in the
 * work function's own scope (the sandbox: new Function; node: a vm context) and returns its value.
 */
export function compileWorkFunction(source, evaluate) {
  const Bytes = evaluate("return Uint8Array;"); // before the source runs: the realm's own
  let work;
  try {
    work = evaluate(`"use strict";\nreturn (${source}\n);`);
  } catch (expressionError) {
    if (!expressionError || expressionError.name !== "SyntaxError") throw expressionError;
    try {
      work = evaluate(`${source}\n;return typeof work === "function" ? work : undefined;`);
    } catch (statementsError) {
      throw statementsError && statementsError.name === "SyntaxError" ? expressionError : statementsError;
    }
  }
  if (typeof work !== "function") {
    throw new TypeError("the work function source is not a function: write function (datum, ...args) { ... }");
  }
  realmBytes.set(work, typeof Bytes === "function" ? Bytes : Uint8Array);
  return work;
}

// The Uint8Array of the realm each work function was compiled in (node runs them in a `vm`
// context, whose Uint8Array is not this module's): the bytes it receives are made of it.
const realmBytes = new WeakMap();

export function errorReply(error) {
  if (error && typeof error === "object" && "message" in error) {
    return { type: "error", name: String(error.name ?? "Error"), message: String(error.message),
             traceback: String(error.stack ?? "") };
  }
  return { type: "error", name: "Error", message: describe(error), traceback: "" };
}

export function resultReply(result, sliceNumber) {
  let encoded;
  try {
    encoded = encodeJson(result);
  } catch (error) {
    const why = error && typeof error === "object" && "message" in error ? error.message : String(error);
    return errorReply(new TypeError(`result of slice ${sliceNumber} is not JSON-serialisable: ${why}`));
  }
  // Parse back so the receiver gets exactly what JSON carries (no functions, NaN becomes null).
  return { type: "result", value: parseJson(encoded) };
}

// The arguments of each job as its work function receives them: decoded once per args list.
const decodedArgs = new WeakMap();

function argumentsOf(args, resolve, Bytes) {
  if (!decodedArgs.has(args)) decodedArgs.set(args, decode(args, resolve, Bytes));
  return decodedArgs.get(args);
}

/**
 * Computes one slice with a compiled work function; `state` is the slice's progress state.
 * `args` and `datum` are in the value encoding; `resolve({sha256, size})` gives a blob's bytes
 * (a Uint8Array), for hosts that fetched them.
 */
export async function runSlice(work, args, sliceNumber, datum, state, resolve = missingBlob) {
  let reply;
  try {
    const Bytes = realmBytes.get(work) ?? Uint8Array;
    const decoded = decode(datum, resolve, Bytes);
    reply = resultReply(await work(decoded, ...argumentsOf(args, resolve, Bytes)), sliceNumber);
  } catch (error) {
    reply = errorReply(error);
  }
  if (reply.type === "result" && state.progressProblem) {
    reply = { type: "error", name: "RangeError", message: state.progressProblem, traceback: "" };
  }
  return reply;
}

function missingBlob({ sha256 }) {
  throw new Error(`blob ${sha256} is referenced, but this worker has not fetched its bytes`);
}
