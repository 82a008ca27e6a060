/*
 * The worker's copy of what it fetched from the portal's store (blobs and wheels) and of
 * Pyodide's package files, by SHA-256.
 *
 *   const cache = new StoreCache({ storeURL: "https://portal.example/store/",
 *                                  pyodideURL: "https://portal.example/worker/vendor/pyodide/" });
 *   const bytes = await cache.get(sha256); // a Uint8Array that hashes to sha256
 *   const numpy = await cache.get(lockSha256, "numpy-2.2.5-cp314-cp314-pyodide_2026_0_wasm32.whl");
 *
 * With a `file` (a Pyodide package's file name, as its lock file lists it with its SHA-256)
 * the bytes come from the Pyodide folder, else from the store. Pyodide's own files (no hash:
 * `get(null, "pyodide.asm.wasm")`) are kept too, so that every sandbox of the page starts
 * Pyodide from one download (the frame's sandboxes have no HTTP cache).
 *
 * Why here. Sandboxes run in a frame of an opaque origin, and Chromium's HTTP cache keeps
 * nothing for such frames: every sandbox that fetched a job's wheel or argument itself fetched
 * it again, for every job and every core. The supervisor runs in a page of the portal's own
 * origin, so its fetches go through the browser's HTTP cache (the store's answers are immutable
 * for a year), and this cache keeps the bytes in memory besides: a second job with the same
 * package, or the same job on a second core, downloads nothing again. Sandboxes ask their pool
 * for a blob (sandbox.js, "Blobs"); the Worker tab's IsolatedPool answers from this cache.
 *
 * Each object is fetched once however many ask for it at the same time, checked against its
 * name before it is kept (a wrong answer is never kept), and kept while the objects add up to at
 * most `maxBytes` (the least recently used go first). Sandboxes check the hash again.
 */

const DEFAULT_MAX_BYTES = 256 * 1024 * 1024;

export class StoreCache {
  #storeURL;
  #pyodideURL;
  #maxBytes;
  #fetch;
  #kept = new Map(); // sha256 -> Uint8Array, the most recently used last
  #keptBytes = 0;
  #loading = new Map(); // sha256 -> Promise<Uint8Array> of a fetch under way
  #downloads = 0;

  /**
   * @param {object} options
   * @param {string} options.storeURL absolute URL of the store's folder, ending in "/store/"
   * @param {string} [options.pyodideURL] absolute URL of the Pyodide folder, ending in "/"
   * @param {number} [options.maxBytes] how many bytes the cache keeps at most
   * @param {function} [options.fetch] the fetch to use (tests)
   */
  constructor({ storeURL, pyodideURL = null, maxBytes = DEFAULT_MAX_BYTES, fetch = globalThis.fetch.bind(globalThis) }) {
    if (!storeURL) throw new TypeError("StoreCache needs storeURL");
    this.#storeURL = storeURL;
    this.#pyodideURL = pyodideURL;
    this.#maxBytes = maxBytes;
    this.#fetch = fetch;
  }

  /** How many objects this cache has fetched (each at most once while it keeps it). */
  get downloads() {
    return this.#downloads;
  }

  /** The bytes that hash to `sha256`: kept, being fetched, or fetched now (from the store, or
   * the Pyodide folder's `file`). With `sha256` null, Pyodide's own `file` (its interpreter,
   * standard library or lock file, which no lock file gives a hash for), unchecked. */
  get(sha256, file = null) {
    const key = sha256 ?? `pyodide:${file}`;
    const kept = this.#kept.get(key);
    if (kept) {
      this.#kept.delete(key); // set again: the most recently used is the last
      this.#kept.set(key, kept);
      return Promise.resolve(kept);
    }
    if (!this.#loading.has(key)) {
      const loading = this.#download(sha256, file).finally(() => this.#loading.delete(key));
      this.#loading.set(key, loading);
    }
    return this.#loading.get(key);
  }

  async #download(sha256, file) {
    if (sha256 !== null && !/^[0-9a-f]{64}$/.test(sha256)) {
      throw new Error(`${JSON.stringify(sha256)} names no object of the store`);
    }
    const { url, what } = this.#source(sha256, file);
    this.#downloads += 1;
    const response = await this.#fetch(url);
    if (response.status !== 200) {
      throw new Error(`${what} could not be fetched from the portal: HTTP ${response.status}${await storeSays(response)}`);
    }
    const bytes = new Uint8Array(await response.arrayBuffer());
    if (sha256 !== null) {
      const digest = await sha256Hex(bytes);
      if (digest !== sha256) throw new Error(`${what} hashes to ${digest}, not ${sha256}: these are not its bytes`);
    }
    this.#keep(sha256 ?? `pyodide:${file}`, bytes);
    return bytes;
  }

  /** Where the bytes come from, and how an error names them. */
  #source(sha256, file) {
    if (file === null) {
      if (sha256 === null) throw new Error("a blob is named by its SHA-256 or a Pyodide file");
      return { url: new URL(sha256, this.#storeURL).href, what: `blob ${sha256} of the store` };
    }
    if (!this.#pyodideURL || !/^[A-Za-z0-9_+-][A-Za-z0-9_.+-]*$/.test(file)) {
      throw new Error(`${JSON.stringify(file)} names no file of the Pyodide folder`);
    }
    return { url: new URL(file, this.#pyodideURL).href, what: `Pyodide package file ${file}` };
  }

  #keep(sha256, bytes) {
    if (bytes.length > this.#maxBytes) return;
    this.#kept.set(sha256, bytes);
    this.#keptBytes += bytes.length;
    for (const [oldest, old] of this.#kept) {
      if (this.#keptBytes <= this.#maxBytes) break;
      this.#kept.delete(oldest);
      this.#keptBytes -= old.length;
    }
  }
}

async function sha256Hex(bytes) {
  if (!globalThis.crypto?.subtle) throw new Error("checking a blob needs crypto.subtle, which only a secure context (https) has");
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/** " (CODE: message)" of a store's error answer, or "" when it has none. */
async function storeSays(response) {
  try {
    const { code, message } = (await response.json()).error;
    return ` (${code}: ${message})`;
  } catch {
    return "";
  }
}
