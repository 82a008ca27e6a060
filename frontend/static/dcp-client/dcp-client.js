// dcp-client.js: the DCP Compute API for web pages, over the portal's HTTP API (/api/v0).
//
//   <script src="https://portal.example.org/dcp-client/dcp-client.js"></script>
//   const job = dcp.compute.for([1, 2, 3], function (x) { progress(); return x * 2 });
//   job.on("result", (event) => console.log(event.sliceNumber, event.result));
//   const results = await job.exec(0.001);  // [2, 4, 6], in slice order
//
// On the portal's own pages it deploys as the signed-in user, with the session and its CSRF
// token, and asks in a dialog which account pays. Anywhere else, call
// dcp.init({scheduler, apiKey}) first: requests then carry the API key and no cookie.
// A Python job (job.language = "python") may require packages: job.requires("numpy", file)
// takes the names of the portal's Pyodide packages and pure-Python wheel files.
// A classic script with no dependencies: it defines one global, `dcp`.

(() => {
  "use strict";

  const API_PATH = "/api/v0";
  const POLL_FIRST_MS = 500;
  const POLL_MAX_MS = 2000;
  const NETWORK_RETRIES = 3;
  const MAX_RANGES = 100; // per results request, the API's limit
  const MAX_BATCH_SLICES = 100_000; // per request, the API's limit
  const MAX_BATCH_CHARS = 1_000_000; // well under the API's 2.5 MiB body limit
  const CSRF_COOKIE = "csrftoken";
  const STORE_PATH = "/store/";
  const PYODIDE_PATH = "/worker/vendor/pyodide/";
  const PYODIDE_LOCK = "pyodide-lock.json";
  // name-version(-build)-python-abi-platform.whl, as dcp/runtime/packages.py reads it (PEP 427).
  const WHEEL_FILE = new RegExp(
    "^([A-Za-z0-9](?:[A-Za-z0-9._]*[A-Za-z0-9])?)-([A-Za-z0-9_.!+]+)" +
      "(?:-[0-9][A-Za-z0-9_.]*)?-([A-Za-z0-9_.]+)-([A-Za-z0-9_.]+)-([A-Za-z0-9_.]+)\\.whl$",
  );
  const PACKAGE_NAME = /^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$/;
  const PYODIDE_FILE_NAME = /^[A-Za-z0-9_+-][A-Za-z0-9_.+-]*$/; // what the portal serves there

  const scriptOrigin = document.currentScript
    ? new URL(document.currentScript.src, location.href).origin
    : location.origin;
  const settings = { scheduler: scriptOrigin, apiKey: "" };

  class DCPError extends Error {
    constructor(code, message) {
      super(message);
      this.name = "DCPError";
      this.code = code;
    }
  }

  // --- configuration ------------------------------------------------------------------------

  function init({ scheduler, apiKey } = {}) {
    if (scheduler !== undefined) settings.scheduler = schedulerOrigin(scheduler);
    if (apiKey !== undefined) settings.apiKey = String(apiKey);
  }

  function schedulerOrigin(scheduler) {
    const url = new URL(String(scheduler), location.href);
    if (!["http:", "https:"].includes(url.protocol)) {
      throw new DCPError("EINVALID", `scheduler must be an http(s) URL, not ${url.protocol}`);
    }
    return url.origin;
  }

  // The session pays only on the portal's own pages, and only when no API key was given.
  function usesSession() {
    return !settings.apiKey && settings.scheduler === location.origin;
  }

  // --- HTTP ---------------------------------------------------------------------------------

  async function call(method, path, { body, query = [], idempotencyKey } = {}) {
    const url = new URL(API_PATH + path, settings.scheduler);
    query.forEach(([name, value]) => url.searchParams.append(name, value));
    const headers = { Accept: "application/json", ...authHeaders() };
    if (idempotencyKey) headers["Idempotency-Key"] = idempotencyKey;
    const options = { method, headers, cache: "no-store", credentials: credentialsMode() };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const repeatable = method === "GET" || Boolean(idempotencyKey);
    return answerOf(await fetchWithRetries(url, options, repeatable));
  }

  function credentialsMode() {
    return usesSession() ? "same-origin" : "omit";
  }

  function authHeaders() {
    if (settings.apiKey) return { Authorization: `Bearer ${settings.apiKey}` };
    if (!usesSession()) {
      throw new DCPError(
        "EAUTH",
        "this page is not on the portal: call dcp.init({scheduler, apiKey}) with an API key first",
      );
    }
    const token = cookie(CSRF_COOKIE);
    if (!token) throw new DCPError("EAUTH", "no CSRF cookie: sign in to the portal and reload");
    return { "X-CSRFToken": token };
  }

  function cookie(name) {
    const prefix = `${name}=`;
    const found = document.cookie.split("; ").find((part) => part.startsWith(prefix));
    return found ? decodeURIComponent(found.slice(prefix.length)) : "";
  }

  async function fetchWithRetries(url, options, repeatable) {
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await fetch(url, options);
      } catch (error) {
        if (!repeatable || attempt >= NETWORK_RETRIES) {
          throw new DCPError("ENETWORK", `cannot reach ${url.origin}: ${error.message}`);
        }
        await sleep(POLL_FIRST_MS * attempt);
      }
    }
  }

  async function answerOf(response) {
    if (response.status === 204) return null;
    const body = await response.json().catch(() => null);
    if (response.ok) return body;
    const error = body?.error ?? {
      code: `EHTTP${response.status}`,
      message: `the portal answered ${response.status}`,
    };
    throw new DCPError(error.code, error.message);
  }

  // A lost connection or a proxy's 502/503/504 while watching a job: poll again later.
  function isTransient(error) {
    return error.code === "ENETWORK" || /^EHTTP50[234]$/.test(error.code ?? "");
  }

  function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }

  // Each write carries a key of its own, so that a retry after a lost answer pays once.
  function newIdempotencyKey() {
    return hex(crypto.getRandomValues(new Uint8Array(16)));
  }

  function hex(bytes) {
    return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
  }

  // --- input --------------------------------------------------------------------------------

  function rangeValues(start, end, step = 1) {
    if (![start, end, step].every(Number.isFinite) || step <= 0) {
      throw new DCPError("EINVALID", "a range needs finite numbers and a positive step");
    }
    const count = Math.floor((end - start) / step + 1e-9) + 1;
    return Array.from({ length: Math.max(count, 0) }, (_, index) => start + index * step);
  }

  // Consecutive groups of values that each fit in one request.
  function batches(values) {
    const groups = [[]];
    let chars = 0;
    for (const value of values) {
      const size = JSON.stringify(value)?.length ?? 4;
      const group = groups.at(-1);
      if (group.length && (group.length >= MAX_BATCH_SLICES || chars + size > MAX_BATCH_CHARS)) {
        groups.push([]);
        chars = 0;
      }
      groups.at(-1).push(value);
      chars += size + 1;
    }
    return groups;
  }

  // `start-end` ranges of the slice numbers not yet received, at most MAX_RANGES of them.
  function missingRanges(have, from) {
    const ranges = [];
    let start = null;
    for (let index = from; index <= have.length; index += 1) {
      const missing = index < have.length && !have[index];
      if (missing && start === null) start = index;
      if (!missing && start !== null) {
        ranges.push([start + 1, index]);
        start = null;
      }
    }
    if (ranges.length > MAX_RANGES) {
      ranges.splice(MAX_RANGES - 1, Infinity, [ranges[MAX_RANGES - 1][0], have.length]);
    }
    return ranges.map(([first, last]) => (first === last ? `${first}` : `${first}-${last}`));
  }

  // --- packages -----------------------------------------------------------------------------

  // One item of job.requires, checked at once: the name of one of the portal's Pyodide
  // packages, or a pure-Python wheel (a File, a Blob with a name, or {file, bytes}).
  function requiredItem(item) {
    if (typeof item === "string") return requiredName(item);
    if (item instanceof Blob) {
      if (typeof item.name !== "string" || !item.name) {
        throw new DCPError("EINVALID", "requires: a Blob needs a `name`, the wheel's file name");
      }
      return requiredWheel(item.name, item);
    }
    if (item !== null && typeof item === "object" && "file" in item) {
      return requiredWheel(String(item.file), copiedBytes(item));
    }
    throw new DCPError(
      "EINVALID",
      `requires takes package names and wheels (a File, or {file, bytes}), not ${typeof item}`,
    );
  }

  function requiredName(text) {
    if (/^[./~]|\.(whl|py)$|\/$/.test(text)) {
      throw new DCPError(
        "EINVALID",
        `requires: a web page reads no file by its path (${text}): give a wheel as a File ` +
          "(from <input type=file>) or as {file, bytes}",
      );
    }
    if (!PACKAGE_NAME.test(text)) {
      throw new DCPError(
        "EINVALID",
        `requires: "${text}" is not a package name: a web page requires the portal's Pyodide ` +
          "packages by name only, in the versions the portal offers",
      );
    }
    return { kind: "name", name: text };
  }

  function copiedBytes({ file, bytes }) {
    if (bytes instanceof ArrayBuffer) return new Uint8Array(bytes.slice(0));
    if (ArrayBuffer.isView(bytes)) {
      return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength).slice();
    }
    throw new DCPError(
      "EINVALID",
      `requires: the bytes of ${file} must be a Uint8Array or an ArrayBuffer`,
    );
  }

  // A wheel's distribution and version, from its file name (PEP 427); pure-Python ones only.
  function requiredWheel(file, source) {
    const match = WHEEL_FILE.exec(file);
    if (!match) {
      throw new DCPError(
        "EINVALID",
        `requires: ${file} is not a wheel's file name (name-version-tags.whl)`,
      );
    }
    const [, name, version, , abi, platform] = match;
    if (abi !== "none" || platform !== "any") {
      throw new DCPError("EINVALID", `requires: ${file} is not a pure-Python wheel (none-any)`);
    }
    const size = source instanceof Blob ? source.size : source.length;
    if (!size) throw new DCPError("EINVALID", `requires: ${file} is empty`);
    return { kind: "wheel", name, version, file, source };
  }

  // The REST `packages` of a job's requires, and the wheels to store: the names checked
  // against the portal's Pyodide packages (ENOPACKAGE), the wheels read and hashed. Nothing
  // is stored yet.
  async function resolvePackages(items) {
    const names = await offeredNames(items.filter((item) => item.kind === "name"));
    const wheels = [];
    for (const item of items.filter((each) => each.kind === "wheel")) {
      const wheel = await hashedWheel(item);
      const same = wheels.find((other) => other.file === wheel.file);
      if (same && same.sha256 !== wheel.sha256) {
        throw new DCPError("EINVALID", `requires: two different wheels are named ${wheel.file}`);
      }
      if (!same) wheels.push(wheel);
    }
    const listed = wheels.map(({ name, version, file, sha256, size }) => {
      return { name, version, file, sha256, size };
    });
    return { list: [...names, ...listed], wheels };
  }

  async function hashedWheel({ name, version, file, source }) {
    const bytes = source instanceof Blob ? new Uint8Array(await source.arrayBuffer()) : source;
    return { name, version, file, sha256: await sha256Hex(bytes), size: bytes.length, bytes };
  }

  async function sha256Hex(bytes) {
    if (!crypto.subtle) {
      throw new DCPError(
        "EINVALID",
        "hashing a wheel needs crypto.subtle, which browsers give only to secure pages " +
          "(https, or http://localhost)",
      );
    }
    return hex(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)));
  }

  // A distribution's name as PEP 503 compares names: `Foo.Bar_baz` is `foo-bar-baz`.
  function normalizeName(name) {
    return name.replace(/[-_.]+/g, "-").toLowerCase();
  }

  // The lock file's names of the required packages, each once; ENOPACKAGE naming the first
  // one the portal does not offer: listed in its lock file, with its file served, and so
  // for everything it depends on.
  async function offeredNames(required) {
    if (!required.length) return [];
    const packages = await pyodidePackages();
    const needs = required.map(({ name }) => [name, dependencyClosure(packages, name)]);
    const entries = needs.flatMap(([, closure]) => closure ?? []);
    const files = new Set(entries.map((entry) => entry.fileName));
    const served = new Map();
    await Promise.all([...files].map(async (file) => served.set(file, await isServed(file))));
    const names = new Set();
    for (const [name, closure] of needs) {
      if (!closure || !closure.every((entry) => served.get(entry.fileName))) {
        throw notOffered(name);
      }
      names.add(closure[0].name);
    }
    return [...names];
  }

  function notOffered(name) {
    return new DCPError(
      "ENOPACKAGE",
      `this portal does not offer the Pyodide package "${name}" (nor all it depends on), and ` +
        "a web page cannot resolve names with pip: give the package's pure-Python wheel file " +
        "instead (a File, or {file, bytes})",
    );
  }

  // The package `name` and all it depends on (itself first); null when the lock file lacks
  // one of them.
  function dependencyClosure(packages, name) {
    const found = new Map();
    const pending = [normalizeName(name)];
    while (pending.length) {
      const key = pending.pop();
      if (found.has(key)) continue;
      const entry = packages.get(key);
      if (!entry) return null;
      found.set(key, entry);
      pending.push(...entry.depends.map(normalizeName));
    }
    return [...found.values()];
  }

  // The portal's Pyodide lock file, read once per page and portal: name -> {name, fileName,
  // depends}; empty where the portal serves none.
  const pyodideLocks = new Map();

  function pyodidePackages() {
    const url = new URL(PYODIDE_PATH + PYODIDE_LOCK, settings.scheduler).href;
    if (!pyodideLocks.has(url)) {
      const reading = readLock(new URL(url)).catch((error) => {
        pyodideLocks.delete(url);
        throw error;
      });
      pyodideLocks.set(url, reading);
    }
    return pyodideLocks.get(url);
  }

  async function readLock(url) {
    const options = { cache: "no-cache", credentials: "omit" };
    const response = await fetchWithRetries(url, options, true);
    if (response.status === 404) return new Map();
    if (!response.ok) await answerOf(response); // throws, with the portal's status
    const lock = await response.json().catch(() => null);
    if (lock === null || typeof lock !== "object") {
      throw new DCPError("ENETWORK", `${url} is not a Pyodide lock file (JSON)`);
    }
    const entries = Object.entries(lock.packages ?? {}).map(([key, entry]) => [
      normalizeName(key),
      {
        name: String(entry?.name ?? key),
        fileName: String(entry?.file_name ?? ""),
        depends: Array.from(entry?.depends ?? [], String),
      },
    ]);
    return new Map(entries);
  }

  // Whether the portal serves a file of its Pyodide folder (HEAD answers 200), asked once.
  const servedFiles = new Map();

  function isServed(fileName) {
    if (!PYODIDE_FILE_NAME.test(fileName)) return Promise.resolve(false);
    const url = new URL(PYODIDE_PATH + fileName, settings.scheduler).href;
    if (!servedFiles.has(url)) {
      const asking = headStatus(new URL(url)).then(
        (status) => status === 200,
        (error) => {
          servedFiles.delete(url);
          throw error;
        },
      );
      servedFiles.set(url, asking);
    }
    return servedFiles.get(url);
  }

  // 200 or 404; DCPError for any other answer.
  async function headStatus(url) {
    const options = { method: "HEAD", cache: "no-cache", credentials: "omit" };
    const response = await fetchWithRetries(url, options, true);
    if (response.status !== 200 && response.status !== 404) await answerOf(response);
    return response.status;
  }

  // Each wheel is stored once per page, portal and credentials (docs/store.md): HEAD first,
  // then its bytes when the store lacks them, or an empty PUT that claims the object for the
  // caller's user. PUT is safe to repeat: the object is named by its bytes.
  const storedWheels = new Map();

  function storeWheel(wheel) {
    const key = `${settings.scheduler} ${settings.apiKey || "session"} ${wheel.sha256}`;
    if (!storedWheels.has(key)) {
      const storing = putObject(wheel).catch((error) => {
        storedWheels.delete(key);
        throw error;
      });
      storedWheels.set(key, storing);
    }
    return storedWheels.get(key);
  }

  async function putObject({ sha256, bytes }) {
    const url = new URL(STORE_PATH + sha256, settings.scheduler);
    const stored = (await headStatus(url)) === 200;
    const headers = {
      Accept: "application/json",
      "Content-Type": "application/octet-stream",
      ...authHeaders(),
    };
    const body = stored ? new Uint8Array(0) : bytes;
    const credentials = credentialsMode();
    const options = { method: "PUT", headers, body, cache: "no-store", credentials };
    return answerOf(await fetchWithRetries(url, options, true));
  }

  // --- events -------------------------------------------------------------------------------

  class Emitter {
    #listeners = new Map();

    on(event, listener) {
      if (!this.#listeners.has(event)) this.#listeners.set(event, new Set());
      this.#listeners.get(event).add(listener);
      return this;
    }

    off(event, listener) {
      this.#listeners.get(event)?.delete(listener);
      return this;
    }

    emit(event, detail) {
      for (const listener of [...(this.#listeners.get(event) ?? [])]) {
        try {
          listener(detail);
        } catch (error) {
          console.error(`dcp: a "${event}" listener failed`, error); // the job goes on
        }
      }
    }
  }

  // --- the job ------------------------------------------------------------------------------

  class Job extends Emitter {
    #input;
    #have;
    #results;
    #received = 0;
    #firstMissing = 0;
    #lastStatus = "";
    #paused = false;
    #started = false;
    #cancelReason = null;
    #requires = [];

    constructor(input, work, args) {
      super();
      if (typeof work !== "function" && typeof work !== "string") {
        throw new DCPError("EINVALID", "the work function must be a function or its source");
      }
      this.#input = input;
      this.#have = new Uint8Array(input.length);
      this.#results = new Array(input.length);
      this.id = null;
      this.work = typeof work === "function" ? work.toString() : work;
      this.language = "js";
      this.args = args === undefined ? [] : Array.from(args);
      this.public = {};
      this.requirements = {};
      // Result verification, e.g. {quorum: 2}: each slice is computed by workers of that many
      // users and accepted when their results agree; the escrow covers quorum results a slice.
      this.verify = null;
      // [{joinKey, joinSecret}]: computed only by workers that joined one of these groups.
      this.computeGroups = [];
      this.readyState = "new";
    }

    // What a Python work function imports besides the standard library: names of the
    // portal's Pyodide packages ("numpy") and pure-Python wheels (a File, a Blob with a name,
    // or {file: "name-1.0-py3-none-any.whl", bytes}), each alone or in an array. Checked at
    // once (EINVALID); the names are looked up, and the wheels stored, by exec(). The job.
    requires(...items) {
      if (this.#started) {
        throw new DCPError("EINVALID", "the job is deployed already: its requires are fixed");
      }
      this.#requires.push(...items.flat().map(requiredItem));
      return this;
    }

    // Deploy, pay `slicePaymentOffer` credits a slice (or the market value), and resolve to
    // the results in slice order once every slice has one.
    async exec(slicePaymentOffer = "MARKET_VALUE") {
      if (this.#started) throw new DCPError("EINVALID", "exec() runs a job once");
      this.#started = true;
      try {
        this.#setState("exec");
        this.#setState("init");
        const packages = await this.#resolvePackages(); // refused before anyone is asked to pay
        const account = await this.#chooseAccount(slicePaymentOffer);
        this.#setState("deploying");
        await this.#deploy(slicePaymentOffer, account, packages);
        this.#setState("deployed");
        const results = await this.#watch();
        this.#setState("complete");
        this.emit("complete", results);
        return results;
      } catch (error) {
        const failure = error instanceof DCPError ? error : new DCPError("EINTERNAL", String(error));
        this.emit("error", { jobId: this.id, code: failure.code, message: failure.message });
        throw failure;
      }
    }

    // Add `credits` to the escrow of a job deployed at MARKET_VALUE (it pays per CPU-second out
    // of it); a job paused for want of funds (the "nofunds" event) resumes. Resolves to what
    // its escrow holds now.
    async escrow(credits) {
      if (!this.id) throw new DCPError("ENOJOB", "the job is not deployed yet: deploy it with exec()");
      const options = { body: { amount: String(credits) }, idempotencyKey: newIdempotencyKey() };
      return (await call("POST", `/job/${this.id}/escrow`, options)).escrow;
    }

    // Stop the job: workers drop its slices, the unspent escrow is refunded, exec() rejects.
    async cancel(reason = "cancelled by the page that deployed it") {
      this.#cancelReason = reason;
      if (this.id) await call("DELETE", `/job/${this.id}`, { body: { reason } });
    }

    #setState(state) {
      this.readyState = state;
      this.emit("readystatechange", state);
    }

    async #resolvePackages() {
      if (!this.#requires.length) return null;
      if (this.language !== "python") {
        throw new DCPError(
          "EINVALID",
          "requires is for Python work functions: a JavaScript one cannot import packages",
        );
      }
      return resolvePackages(this.#requires);
    }

    async #chooseAccount(offer) {
      if (!usesSession()) return null; // an API key pays from its own account
      this.#setState("preauth");
      const accounts = await call("GET", "/accounts");
      const quorum = this.verify?.quorum ?? 1;
      const summary = { slices: this.#input.length, offer, name: this.public?.name, quorum };
      const address = await askWhichAccountPays(accounts, summary);
      if (!address) throw new DCPError("ECANCELLED", "no account was chosen: nothing was deployed");
      return address;
    }

    async #deploy(offer, account, packages) {
      if (this.#cancelReason !== null) throw new DCPError("ECANCELLED", this.#cancelReason);
      if (packages) await Promise.all(packages.wheels.map(storeWheel));
      const [first, ...rest] = batches(this.#input);
      const body = {
        slices: first,
        work: { language: this.language, function: this.work },
        args: this.args,
        requirements: this.requirements,
        public: this.public,
        slicePaymentOffer: offer,
      };
      if (this.verify) body.verify = this.verify;
      if (this.computeGroups.length) body.computeGroups = this.computeGroups;
      if (account) body.account = { address: account };
      if (packages) body.packages = packages.list;
      const { jobId } = await call("POST", "/job", { body, idempotencyKey: newIdempotencyKey() });
      this.id = jobId;
      this.emit("accepted", { jobId });
      if (this.#cancelReason !== null) return this.cancel(this.#cancelReason);
      for (const slices of rest) {
        const options = { body: { slices }, idempotencyKey: newIdempotencyKey() };
        await call("POST", `/job/${jobId}/slices`, options);
      }
      await call("POST", `/job/${jobId}/close`);
    }

    // Poll status and fetch new results until the job ends: every 500 ms while results
    // arrive, backing off to 2 s while none do.
    async #watch() {
      let delay = POLL_FIRST_MS;
      for (;;) {
        const { status, received } = await this.#poll();
        if (status?.status === "cancelled") throw await this.#cancelled();
        if (status?.status === "finished" && this.#received === this.#input.length) {
          return this.#results;
        }
        delay = received ? POLL_FIRST_MS : Math.min(delay * 1.5, POLL_MAX_MS);
        await sleep(delay);
      }
    }

    async #poll() {
      try {
        const status = await call("GET", `/job/${this.id}/status`);
        this.#noteStatus(status);
        const received = status.completedSlices > this.#received ? await this.#fetchResults() : 0;
        return { status, received };
      } catch (error) {
        if (isTransient(error)) return { status: null, received: 0 }; // try again
        throw error;
      }
    }

    #noteStatus(status) {
      const event = {
        jobId: this.id,
        total: status.totalSlices,
        distributed: status.distributedSlices,
        computed: status.completedSlices,
        active: status.activeSlices,
        failed: status.failedSlices,
      };
      if (status.verification) event.verification = status.verification;
      const paused = status.status === "paused";
      if (paused && !this.#paused) this.emit("nofunds", { jobId: this.id });
      this.#paused = paused;
      const text = JSON.stringify(event);
      if (text === this.#lastStatus) return;
      this.#lastStatus = text;
      this.emit("status", event);
    }

    async #fetchResults() {
      let ranges = missingRanges(this.#have, this.#firstMissing);
      let received = 0;
      while (ranges.length) {
        const query = ranges.map((range) => ["range", range]);
        const page = await call("GET", `/job/${this.id}/result`, { query });
        page.results.forEach(({ sliceNumber, value }) => {
          received += this.#take(sliceNumber, value);
        });
        ranges = page.nextRanges;
      }
      while (this.#have[this.#firstMissing]) this.#firstMissing += 1;
      return received;
    }

    #take(sliceNumber, value) {
      const index = sliceNumber - 1;
      if (this.#have[index]) return 0;
      this.#have[index] = 1;
      this.#results[index] = value;
      this.#received += 1;
      this.emit("result", { jobId: this.id, sliceNumber, result: value });
      return 1;
    }

    async #cancelled() {
      const job = await call("GET", `/job/${this.id}`);
      const code = job.cancelCode ?? "ECANCELLED";
      const reason = job.cancelReason ?? "the job was cancelled";
      this.emit("cancel", { jobId: this.id, code, reason });
      this.#setState("cancelled");
      return new DCPError(code, reason);
    }
  }

  // --- "Which account pays?" ----------------------------------------------------------------

  const STYLE = {
    dialog:
      "border:none;border-radius:14px;padding:22px;width:min(480px,92vw);max-height:90vh;" +
      "overflow:auto;color:#1d2433;background:#fff;" +
      "font:15px/1.5 system-ui,sans-serif;box-shadow:0 18px 50px rgba(16,24,40,.25)",
    heading: "margin:0 0 6px;font-size:18px",
    summary: "margin:0 0 14px;color:#5d6679;font-size:13px",
    fieldset: "border:none;margin:0 0 16px;padding:0;display:flex;flex-direction:column;gap:8px",
    legend: "font-size:13px;color:#5d6679;padding:0;margin-bottom:6px",
    option:
      "display:flex;flex-direction:row;gap:10px;align-items:flex-start;padding:10px 12px;" +
      "border:1px solid #dfe3ea;border-radius:8px;cursor:pointer;color:#1d2433;font-size:14px",
    radio: "flex:none;margin:3px 0 0;padding:0;width:16px;height:16px",
    address:
      "display:block;font:12px ui-monospace,Menlo,Consolas,monospace;color:#5d6679;" +
      "word-break:break-all",
    actions: "display:flex;gap:8px;justify-content:flex-end",
    pay:
      "font:inherit;font-weight:600;cursor:pointer;border:1px solid #2f5bea;background:#2f5bea;" +
      "color:#fff;padding:8px 14px;border-radius:8px",
    cancel:
      "font:inherit;font-weight:600;cursor:pointer;border:1px solid #2f5bea;background:#fff;" +
      "color:#2f5bea;padding:8px 14px;border-radius:8px",
  };
  let dialogCount = 0;

  function element(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    Object.entries(attributes).forEach(([name, value]) => node.setAttribute(name, value));
    node.append(...children);
    return node;
  }

  function costLine({ slices, offer, name, quorum = 1 }) {
    const job = name ? `Job “${name}”: ` : "This job: ";
    const each = quorum > 1 ? `, each verified by ${quorum} users,` : "";
    const count = `${slices} slice${slices === 1 ? "" : "s"}${each}`;
    const per = quorum > 1 ? "result" : "slice";
    if (offer === "MARKET_VALUE") return `${job}${count} at the market value per ${per}.`;
    const total = Number((Number(offer) * slices * quorum).toFixed(9));
    return (
      `${job}${count} at ${offer} credits each: up to ${total} credits move into the job's ` +
      "escrow now, and what it does not spend comes back."
    );
  }

  function accountOption(account, index) {
    const radio = element("input", {
      type: "radio",
      name: "account",
      value: account.address,
      style: STYLE.radio,
    });
    radio.checked = index === 0;
    const text = element(
      "span",
      {},
      element("strong", {}, account.name),
      ` · ${account.balance} credits`,
      element("span", { style: STYLE.address }, account.address),
    );
    return element("label", { style: STYLE.option }, radio, text);
  }

  function accountDialog(accounts, summary) {
    dialogCount += 1;
    const titleId = `dcp-pay-title-${dialogCount}`;
    const summaryId = `dcp-pay-summary-${dialogCount}`;
    const form = element(
      "form",
      { method: "dialog" },
      element("h2", { id: titleId, style: STYLE.heading }, "Which account pays?"),
      element("p", { id: summaryId, style: STYLE.summary }, costLine(summary)),
      element(
        "fieldset",
        { style: STYLE.fieldset },
        element("legend", { style: STYLE.legend }, "Your accounts"),
        ...accounts.map(accountOption),
      ),
      element(
        "div",
        { style: STYLE.actions },
        element("button", { value: "cancel", formnovalidate: "", style: STYLE.cancel }, "Cancel"),
        element("button", { value: "pay", style: STYLE.pay }, "Pay and deploy"),
      ),
    );
    const attributes = { "aria-labelledby": titleId, "aria-describedby": summaryId };
    return element("dialog", { ...attributes, style: STYLE.dialog }, form);
  }

  // The address the person chose, or null when they cancelled.
  function askWhichAccountPays(accounts, summary) {
    if (!accounts.length) throw new DCPError("EACCOUNT", "you have no account key to pay from");
    const dialog = accountDialog(accounts, summary);
    document.body.append(dialog);
    return new Promise((resolve) => {
      dialog.addEventListener(
        "close",
        () => {
          const chosen = dialog.querySelector('input[name="account"]:checked');
          const address = dialog.returnValue === "pay" && chosen ? chosen.value : null;
          dialog.remove();
          resolve(address);
        },
        { once: true },
      );
      dialog.showModal();
      dialog.querySelector('input[name="account"]:checked')?.focus();
    });
  }

  // --- the global ---------------------------------------------------------------------------

  function computeFor(...params) {
    if (typeof params[0] === "number") {
      const [start, end, ...rest] = params;
      const step = typeof rest[0] === "number" ? rest.shift() : 1;
      const [work, args] = rest;
      return new Job(rangeValues(start, end, step), work, args);
    }
    const [input, work, args] = params;
    if (input == null || typeof input[Symbol.iterator] !== "function") {
      throw new DCPError("EINVALID", "compute.for takes an array (or iterable), or start and end");
    }
    return new Job(Array.from(input), work, args);
  }

  // Merged with what is there: dcp-worker.js adds dcp.worker, before or after this script.
  window.dcp = Object.freeze({
    ...window.dcp,
    init,
    compute: Object.freeze({ for: computeFor }),
    DCPError,
  });
})();
