// dcp-worker.js: a DCP worker in any web page. The page's visitors compute slices of other
// people's jobs in the portal's sandboxes, and the credits go to the page's account.
//
//   <script src="https://portal.example.org/dcp-client/dcp-worker.js"></script>
//   const worker = new dcp.worker.Worker({ paymentAddress: "0x…", maxWorkingSandboxes: 2 });
//   worker.on("payment", ({ earned, total }) => console.log(`+${earned} credits, ${total} in all`));
//   await worker.start();  // resolves once connected; rejects with the reason it could not
//   await worker.stop();   // hands the slices in flight back
//
// The work happens in a hidden frame of the portal's origin (/worker/embed.html, see
// worker_static/embed.js): the Worker tab's supervisor and sandboxes, so nothing of this page
// reaches a work function, nor the other way round. The page and the frame find each other by
// postMessage, each checking the other's origin, then talk over a MessageChannel of their own.
// The portal's operator names the sites that may embed it (WORKER_EMBED_ORIGINS); elsewhere
// start() fails with an `error` event that says so.
//
// Events (`worker.on(name, (detail) => …)`, or addEventListener with a CustomEvent):
//   start {crossOriginIsolated}  stop {slicesComputed, creditsEarned}  state {state, ...}
//   result {accepted, slicesComputed}  payment {earned, total}  error {message}  log {message, level}
//
// A classic script with no dependencies: it adds `dcp.worker` to the global `dcp` (load it
// after dcp-client.js where a page uses both).

(() => {
  "use strict";

  const FRAME_PATH = "/worker/embed.html";
  const ACCESS_PATH = "/worker/embed.json";
  const HELLO = "dcp-worker:hello";
  const CONNECT = "dcp-worker:connect";
  const REFUSED = "dcp-worker:refused";
  const HELLO_MS = 30_000; // how long the frame may take to load and say hello
  const ADDRESS = /^0x[0-9a-fA-F]{40}$/;

  const scriptOrigin = document.currentScript
    ? new URL(document.currentScript.src, location.href).origin
    : location.origin;

  /** The supervisor options a DCP-style options object says (DCP's names, then ours). */
  function supervisorOptions({ paymentAddress, maxWorkingSandboxes, cores, gpu, token = "", ...rest }) {
    const address = String(paymentAddress?.address ?? paymentAddress ?? "");
    if (address && !ADDRESS.test(address)) {
      throw new TypeError(`paymentAddress must be 0x and 40 hex digits, not ${JSON.stringify(address)}`);
    }
    if (!address && !token) {
      throw new TypeError("dcp.worker.Worker needs a paymentAddress (or a worker token)");
    }
    const options = { ...plainData(rest), paymentAddress: address, token: String(token) };
    const count = maxWorkingSandboxes ?? (typeof cores === "object" ? cores?.cpu : cores);
    if (count != null) options.cores = count;
    options.gpu = Boolean(gpu ?? (typeof cores === "object" && cores?.gpu > 0));
    return options;
  }

  /** The options that can travel to the frame: functions stay behind. */
  function plainData(options) {
    return Object.fromEntries(Object.entries(options).filter(([, value]) => typeof value !== "function"));
  }

  class Worker extends EventTarget {
    #portal;
    #options;
    #frame = null;
    #port = null;
    #phase = "stopped"; // stopped | starting | started
    #runs = 0; // start() calls: a stop() during a start's setup cancels it
    #starting = null; // {promise, resolve, reject} of the start in progress
    #stopping = [];
    #stats = { slicesComputed: 0, creditsEarned: "0", inFlight: 0, state: "stopped" };
    #listeners = new Map(); // "name" -> Map(on()'s listener -> the EventTarget listener calling it)

    /**
     * @param {object} options
     * @param {string} [options.paymentAddress] the account (0x…) paid for the results
     * @param {number} [options.maxWorkingSandboxes] slices at once (default: CPU threads less one)
     * @param {string} [options.token] a worker token, where the portal takes no anonymous workers
     * @param {boolean} [options.gpu] offer the visitor's GPU (WebGPU) to jobs that need one (false)
     * @param {Array<{joinKey: string, joinSecret: string}>} [options.computeGroups]
     * @param {boolean} [options.leavePublicGroup] compute only the compute groups' jobs
     * @param {string} [options.scheduler] the portal (default: where this script came from)
     * Other options go to the supervisor (worker_static/supervisor.js) as they are.
     */
    constructor({ scheduler = scriptOrigin, ...options } = {}) {
      super();
      this.#portal = new URL(scheduler).origin;
      this.#options = supervisorOptions(options);
    }

    /** The supervisor's latest totals: {slicesComputed, creditsEarned, inFlight, state}. */
    get stats() {
      return { ...this.#stats };
    }

    /** Connects and asks for work; resolves on the `start` event, rejects with the `error`. */
    start() {
      if (this.#phase === "started") return Promise.resolve();
      if (this.#phase === "starting") return this.#starting.promise;
      this.#phase = "starting";
      this.#starting = deferred();
      this.#runs += 1;
      const run = this.#runs;
      this.#open().then(
        (port) => this.#runs === run && port.postMessage({ type: "start" }),
        (error) => this.#runs === run && this.#onEvent("error", { message: error.message }),
      );
      return this.#starting.promise;
    }

    /** Hands the slices in flight back and disconnects; resolves on the `stop` event. */
    stop() {
      if (this.#phase === "stopped") return Promise.resolve();
      this.#runs += 1;
      if (!this.#port) {
        this.#onEvent("stop", { slicesComputed: this.#stats.slicesComputed, creditsEarned: this.#stats.creditsEarned });
        return Promise.resolve();
      }
      const stopped = deferred();
      this.#stopping.push(stopped);
      this.#port.postMessage({ type: "stop" });
      return stopped.promise;
    }

    /** DCP's style: `listener(detail)`. */
    on(name, listener) {
      const wrapped = (event) => listener(event.detail);
      if (!this.#listeners.has(name)) this.#listeners.set(name, new Map());
      this.#listeners.get(name).set(listener, wrapped);
      this.addEventListener(name, wrapped);
      return this;
    }

    off(name, listener) {
      const wrapped = this.#listeners.get(name)?.get(listener);
      this.#listeners.get(name)?.delete(listener);
      this.removeEventListener(name, wrapped ?? listener);
      return this;
    }

    // ---------------------------------------------------------------------------- frame

    async #open() {
      if (this.#port) return this.#port;
      await this.#checkAccess();
      const port = await this.#frameReady();
      port.onmessage = ({ data }) => this.#onFrameMessage(data);
      this.#port = port;
      return port;
    }

    /** Asks the portal first, so that a refusal says why (the frame would just stay blank). */
    async #checkAccess() {
      const url = new URL(ACCESS_PATH, this.#portal);
      url.searchParams.set("origin", location.origin);
      let access;
      try {
        access = await (await fetch(url)).json();
      } catch (error) {
        throw new Error(`the portal ${this.#portal} did not answer (${error.message})`);
      }
      if (!access.embeddable) {
        throw new Error(`${location.origin} may not embed a worker of ${this.#portal}: `
          + "the portal's operator lists the sites that may (WORKER_EMBED_ORIGINS)");
      }
      if (access.tokenNeeded && !this.#options.token) {
        throw new Error(`${this.#portal} takes no anonymous workers: give the Worker a worker token `
          + "({token: …}) made on the portal's Workers page");
      }
    }

    /** Loads the frame and resolves to this page's end of its channel once it says hello. */
    #frameReady() {
      return new Promise((resolve, reject) => {
        this.#frame?.remove();
        const frame = document.createElement("iframe");
        frame.hidden = true;
        frame.title = "DCP worker";
        frame.allow = "cross-origin-isolated"; // the sandboxes can interrupt Python, where the page is
        frame.src = new URL(FRAME_PATH, this.#portal).href;
        const settle = (outcome, value) => {
          clearTimeout(timer);
          window.removeEventListener("message", onMessage);
          outcome(value);
        };
        const timer = setTimeout(() => settle(reject, new Error(
          `the worker frame of ${this.#portal} did not answer within ${HELLO_MS / 1000} s`)), HELLO_MS);
        const onMessage = (event) => {
          if (event.source !== frame.contentWindow || event.origin !== this.#portal) return;
          if (event.data?.type === REFUSED) settle(reject, new Error(event.data.message));
          if (event.data?.type !== HELLO) return;
          const channel = new MessageChannel();
          try {
            frame.contentWindow.postMessage({ type: CONNECT, options: this.#options }, this.#portal, [channel.port2]);
            settle(resolve, channel.port1);
          } catch (error) {
            settle(reject, error); // options that cannot be copied
          }
        };
        window.addEventListener("message", onMessage);
        this.#frame = frame;
        (document.body ?? document.documentElement).append(frame);
      });
    }

    #onFrameMessage(data) {
      if (data?.type === "stats") this.#stats = { ...data.stats };
      else if (data?.type === "event") this.#onEvent(data.name, data.detail ?? {});
    }

    /** Settles start() and stop() where an event ends them, then tells the listeners. */
    #onEvent(name, detail) {
      if (name === "start") {
        this.#phase = "started";
        this.#starting?.resolve();
      } else if (name === "error") {
        this.#starting?.reject(new Error(detail.message));
        if (!this.#port) this.#phase = "stopped"; // it never reached the frame: no `stop` follows
      } else if (name === "stop") {
        this.#phase = "stopped";
        this.#starting?.reject(new Error("the worker was stopped before it started"));
        for (const stopped of this.#stopping.splice(0)) stopped.resolve();
      }
      this.dispatchEvent(new CustomEvent(name, { detail }));
    }
  }

  function deferred() {
    const settled = {};
    settled.promise = new Promise((resolve, reject) => Object.assign(settled, { resolve, reject }));
    settled.promise.catch(() => {}); // the `error` event tells those who did not await start()
    return settled;
  }

  window.dcp = Object.freeze({
    ...window.dcp,
    worker: Object.freeze({ ...window.dcp?.worker, Worker }),
  });
})();
