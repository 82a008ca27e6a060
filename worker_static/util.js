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
