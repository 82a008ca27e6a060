/*
 * Small helpers the worker's page-side modules share.
 */

/** Calls an optional callback of the page; a failing callback is logged, never rethrown. */
export function callQuietly(callback, ...values) {
  if (!callback) return;
  try {
    callback(...values);
  } catch (error) {
    console.error("worker callback failed", error);
  }
}

/** Cuts `text` to `limit` characters, marking the cut with an ellipsis. */
export function clip(text, limit) {
  return text.length <= limit ? text : `${text.slice(0, limit - 1)}…`;
}

/** "1 slice", "3 slices". */
export function plural(count, word) {
  return `${count} ${word}${count === 1 ? "" : "s"}`;
}

const BYTE_UNITS = ["bytes", "KiB", "MiB", "GiB", "TiB"];

/** "5.2 MiB", "1.02 GiB", "300 bytes": a size for a person, to two decimals at most. */
export function formatBytes(bytes) {
  let value = Number(bytes);
  let unit = 0;
  while (value >= 1024 && unit < BYTE_UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : Math.round(value * 100) / 100} ${BYTE_UNITS[unit]}`;
}

/** Where a page served beside these files (the headless and embedded workers) finds its
 * scheduler socket, sandbox script and Pyodide: the Supervisor's URL options. */
export function workerURLs() {
  const socket = new URL("/ws/worker/", location.href);
  socket.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  return {
    socketURL: socket.href,
    sandboxURL: new URL("sandbox.js", import.meta.url).href,
    pyodideURL: new URL("vendor/pyodide/", import.meta.url).href,
  };
}
