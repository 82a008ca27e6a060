// Generated from the Python protocol package (dcp/protocol/) by dcp/protocol/javascript.py:
// do not edit. Import these through protocol.js, which adds the credit arithmetic.

// Version and size limits (dcp/protocol/limits.py, dcp/protocol/messages.py).
export const PROTOCOL_VERSION = 1;
export const MAX_FRAME_BYTES = 4_194_304;
export const FRAME_HEADROOM_BYTES = 64;
export const MAX_CONSOLE_CHARS = 10_000;
export const MAX_RESULTS_PER_FETCH = 10_000;
export const MAX_SLICES_PER_BATCH = 100_000;
export const MAX_SOURCE_CHARS = 1_000_000;
export const MAX_WORKER_JOBS = 100;
export const CLOSE_FLOOD = 4_008;
export const CLOSE_TOO_BIG = 4_009;
export const CLOSE_UNAUTHENTICATED = 4_401;
export const MAX_SANDBOX_MEMORY_BYTES = 1_073_741_824;
export const MAX_ERROR_NAME_CHARS = 200;
export const MAX_ERROR_MESSAGE_CHARS = 10_000;
export const MAX_TRACEBACK_CHARS = 100_000;

// Credits: the ledger counts units of 10**-CREDIT_DECIMALS credit (credits.py).
export const CREDIT_DECIMALS = 9;
export const UNITS_PER_CREDIT = 1_000_000_000n;

// Message types of the worker socket, worker -> scheduler (dcp/protocol/messages.py).
export const WORKER_SENDS = Object.freeze({
  CONSOLE: "console",
  HELLO: "hello",
  PROGRESS: "progress",
  READY: "ready",
  RESULT: "result",
  RETURN: "return",
});

// Message types of the worker socket, scheduler -> worker (dcp/protocol/messages.py).
export const WORKER_RECEIVES = Object.freeze({
  ABORT: "abort",
  ACK: "ack",
  ERROR: "error",
  TASK: "task",
  WAITING: "waiting",
  WELCOME: "welcome",
});

// Message types of the client socket, client -> scheduler (dcp/protocol/messages.py).
export const CLIENT_SENDS = Object.freeze({
  ADD_SLICES: "add_slices",
  CANCEL: "cancel",
  CLOSE: "close",
  DEPLOY: "deploy",
  ESCROW: "escrow",
  HELLO: "hello",
  INPUTS: "inputs",
  JOBS: "jobs",
  RESULTS: "results",
  STATUS: "status",
  SUBSCRIBE: "subscribe",
});

// Message types of the client socket, scheduler -> client (dcp/protocol/messages.py).
export const CLIENT_RECEIVES = Object.freeze({
  ACCEPTED: "accepted",
  ADDED: "added",
  CANCELLED: "cancelled",
  CHALLENGE: "challenge",
  CLOSED: "closed",
  ERROR: "error",
  ESCROWED: "escrowed",
  EVENT: "event",
  INPUTS: "inputs",
  JOBS: "jobs",
  RESULTS: "results",
  STATUS: "status",
  SUBSCRIBED: "subscribed",
  WELCOME: "welcome",
});
