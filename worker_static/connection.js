/*
 * The worker socket: one websocket to the scheduler at a time, hello/welcome, reconnects with
 * exponential backoff and jitter, request ids, and the result batches waiting for their ack.
 *
 *   const connection = new Connection({ url, WebSocket, hello, handlers, events, log });
 *   connection.start();  connection.send({ type: WORKER_SENDS.READY, capacity: 2 });  connection.stop();
 *
 * `hello()` gives the fields of the hello message (cores, capabilities); `handlers` is a Map
 * from the type of an incoming message to its handler (ack handlers also get what the ack
 * settles: {job, count}); `events` are the connection's own moments: connecting(), opened(),
 * closed({code, why, fatal}) and reconnecting({retryInMs, retryAt, code}).
 */

import { PROTOCOL_VERSION, WORKER_RECEIVES, WORKER_SENDS } from "./protocol.js";

const RECONNECT_FIRST_MS = 500;
const RECONNECT_MAX_MS = 15_000;
const ACK_GRACE_MS = 1_000; // stop(): how long the closing socket waits for outstanding acks

// Close codes after which reconnecting cannot help: the person has to act first.
const FATAL_CLOSE_CODES = new Map([
  [4401, "Not signed in: sign in again, then press Start"],
  [4403, "This page's origin is not allowed to connect to the scheduler"],
]);

/** How long to wait before reconnect number `attempt` (from 0): "equal jitter" backoff. */
function reconnectDelay(attempt) {
  const ceiling = Math.min(RECONNECT_MAX_MS, RECONNECT_FIRST_MS * 2 ** attempt);
  return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
}

export class Connection {
  #url;
  #WebSocket;
  #hello;
  #handlers;
  #events;
  #log;

  #active = false; // between start() and stop() (or a fatal close)
  #socket = null; // the live socket; events of earlier ones are ignored
  #welcomed = false;
  #reconnectAttempt = 0;
  #reconnectTimer = null;
  #nextRequestId = 0;
  #helloId = null;
  #pendingAcks = new Map(); // request id -> {socket, job, count}

  constructor({ url, WebSocket, hello, handlers, events, log }) {
    this.#url = url;
    this.#WebSocket = WebSocket;
    this.#hello = hello;
    this.#handlers = handlers;
    this.#events = events;
    this.#log = log;
  }

  /** Whether the scheduler has welcomed the live socket (work may be asked for). */
  get welcomed() {
    return this.#welcomed;
  }

  /** Whether the live socket is open (messages can be sent). */
  get isOpen() {
    return this.#isOpen(this.#socket);
  }

  /** Opens the first socket; later ones follow lost connections until stop(). */
  start() {
    this.#active = true;
    this.#reconnectAttempt = 0;
    this.#connect();
  }

  /** Stops reconnecting and lets the socket go, once its result batches are acknowledged. */
  stop() {
    this.#active = false;
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = null;
    const socket = this.#socket;
    this.#detach();
    if (socket) this.#closeWhenAcked(socket);
  }

  /** Sends a message on the live socket; false when there is none open. */
  send(message) {
    if (!this.isOpen) return false;
    this.#socket.send(JSON.stringify(message));
    return true;
  }

  /** The id of the hello this socket opened with (its welcome or refusal echoes it). */
  get helloId() {
    return this.#helloId;
  }

  /** A fresh id for a request whose reply echoes it. */
  requestId() {
    this.#nextRequestId += 1;
    return this.#nextRequestId;
  }

  /** Sends the text of request `id` and remembers what its ack settles ({job, count}). */
  sendAwaitingAck(id, text, settles) {
    if (!this.isOpen) return false;
    this.#socket.send(text);
    this.#pendingAcks.set(id, { socket: this.#socket, ...settles });
    return true;
  }

  // ------------------------------------------------------------------------- lifecycle

  #connect() {
    this.#events.connecting();
    let socket;
    try {
      socket = new this.#WebSocket(this.#url);
    } catch (error) {
      this.#log(`Cannot open ${this.#url}: ${error.message}`, "error");
      this.#scheduleReconnect(null);
      return;
    }
    this.#socket = socket;
    this.#welcomed = false;
    socket.addEventListener("open", () => this.#onOpen(socket));
    socket.addEventListener("message", (event) => this.#onMessage(socket, event));
    socket.addEventListener("close", (event) => this.#onClose(socket, event));
    // An "error" event is always followed by "close", which does the work.
  }

  #onOpen(socket) {
    if (socket !== this.#socket) return;
    this.#events.opened();
    this.#helloId = this.requestId();
    this.send({ type: WORKER_SENDS.HELLO, id: this.#helloId, version: PROTOCOL_VERSION, ...this.#hello() });
  }

  #onClose(socket, event) {
    this.#forgetAcks(socket);
    if (socket !== this.#socket) return;
    this.#detach();
    if (!this.#active) return;
    const fatal = FATAL_CLOSE_CODES.get(event.code) ?? null;
    if (fatal) this.#active = false;
    const why = event.reason ? `${event.code} ${event.reason}` : `code ${event.code}`;
    this.#events.closed({ code: event.code, why, fatal });
    if (!fatal) this.#scheduleReconnect(event.code);
  }

  #scheduleReconnect(code) {
    const retryInMs = reconnectDelay(this.#reconnectAttempt);
    this.#reconnectAttempt += 1;
    this.#events.reconnecting({ retryInMs, retryAt: Date.now() + retryInMs, code });
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = null;
      if (this.#active) this.#connect();
    }, retryInMs);
  }

  /** Forgets the live socket: its later events are ignored (acks still count). */
  #detach() {
    this.#socket = null;
    this.#welcomed = false;
  }

  /** Closes a socket we no longer use once its result batches are acknowledged (or soon). */
  #closeWhenAcked(socket) {
    const close = () => {
      if (socket.readyState === this.#WebSocket.CLOSED || socket.readyState === this.#WebSocket.CLOSING) return;
      socket.close(1000, "worker stopped");
    };
    if (!this.#awaitsAcks(socket)) {
      close();
      return;
    }
    const timer = setTimeout(close, ACK_GRACE_MS);
    // Registered after #onMessage, so it runs once the ack has been settled.
    socket.addEventListener("message", () => {
      if (!this.#awaitsAcks(socket)) {
        clearTimeout(timer);
        close();
      }
    });
  }

  #isOpen(socket) {
    return Boolean(socket) && socket.readyState === this.#WebSocket.OPEN;
  }

  // -------------------------------------------------------------------------- messages

  #onMessage(socket, event) {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      this.#log("The scheduler sent a frame that is not JSON", "warn");
      return;
    }
    const type = message?.type;
    // Acks of batches sent before stop() still count; anything else only on the live socket.
    if (type !== WORKER_RECEIVES.ACK && socket !== this.#socket) return;
    const settles = this.#ownHandlers.get(type)?.(message);
    const handler = this.#handlers.get(type);
    if (handler) handler(message, settles);
    else this.#log(`Ignored a message of unknown type ${JSON.stringify(type)}`, "warn");
  }

  /** What the connection itself does with a message before its handler runs. */
  #ownHandlers = new Map([
    [WORKER_RECEIVES.WELCOME, () => this.#onWelcome()],
    [WORKER_RECEIVES.ACK, (message) => this.#settleAck(message.id)],
    [WORKER_RECEIVES.ERROR, (message) => this.#settleAck(message.id)], // a refused batch gets no ack
  ]);

  #onWelcome() {
    this.#welcomed = true;
    this.#reconnectAttempt = 0;
  }

  /** Forgets request `id`; returns what its ack settles ({job, count}), if it awaited one. */
  #settleAck(id) {
    const pending = this.#pendingAcks.get(id);
    this.#pendingAcks.delete(id);
    return pending;
  }

  #awaitsAcks(socket) {
    return [...this.#pendingAcks.values()].some((pending) => pending.socket === socket);
  }

  #forgetAcks(socket) {
    for (const [id, pending] of this.#pendingAcks) {
      if (pending.socket === socket) this.#pendingAcks.delete(id);
    }
  }
}
