/*
 * The sandboxes' Pyodide memory snapshot, kept by the page in IndexedDB for its next visits.
 *
 *   import { StoredSnapshots } from "./snapshot-store.js";
 *   const stored = new StoredSnapshots();
 *   const entry = await stored.load(key);        // {snapshot: ArrayBuffer, tag} or null
 *   await stored.save(key, { snapshot, tag });
 *   await stored.drop(key, tag);                 // only while the stored one has that tag
 *
 * Why. The sandboxes live in a frame of an opaque origin (sandbox-host.js), which has no storage
 * of its own, so a fresh Worker tab booted Python in full although an earlier one had taken a
 * snapshot (sandbox-pool.js, "SnapshotStore"). The page is of the portal's origin: it keeps the
 * snapshot the frame sends it and hands it to the next page's frame on connect (isolated-pool.js).
 *
 * Each snapshot is kept with its tag (sandbox.js, snapshotTagFor: it changes with Pyodide, the
 * runtime files and the code run before the snapshot is taken) and the time it was taken. The
 * page does not read the tag: a sandbox restores a snapshot only where the tag is its own, and
 * takes a new one otherwise, which replaces the stored one. One taken more than maxAgeMs ago (24
 * hours) is deleted instead of loaded, so that sandboxes do not keep one str hash seed forever.
 *
 * Keeping a snapshot is optional: without IndexedDB, or when it fails (a private window, a full
 * disk, a blocked upgrade), load() gives null and save() and drop() do nothing.
 */

const DB_NAME = "dcp-sandbox-snapshots";
const DB_VERSION = 1;
const STORE = "snapshots";
export const SNAPSHOT_MAX_AGE_MS = 24 * 60 * 60 * 1000;
const OPEN_TIMEOUT_MS = 5_000; // an open blocked by another tab's older version gives up

/** The outcome of an IndexedDB request as a promise. */
function done(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error ?? new Error("IndexedDB request failed"));
  });
}

export class StoredSnapshots {
  #indexedDB;
  #now;
  #maxAgeMs;
  #db = null; // Promise<IDBDatabase | null>

  /**
   * @param {object} [options]
   * @param {IDBFactory} [options.indexedDB] where to keep snapshots (default: the page's)
   * @param {function} [options.now] () => ms since the epoch (tests)
   * @param {number} [options.maxAgeMs] how long a snapshot is kept
   */
  constructor({ indexedDB = globalThis.indexedDB, now = Date.now, maxAgeMs = SNAPSHOT_MAX_AGE_MS } = {}) {
    this.#indexedDB = indexedDB ?? null;
    this.#now = now;
    this.#maxAgeMs = maxAgeMs;
  }

  /** The snapshot kept under `key`, or null (none, too old, or IndexedDB failed). */
  async load(key) {
    try {
      const entry = await this.#request("readonly", (store) => store.get(key));
      if (!entry || !(entry.snapshot instanceof ArrayBuffer) || typeof entry.tag !== "string") return null;
      const age = this.#now() - Number(entry.takenAt);
      if (!(age >= 0 && age <= this.#maxAgeMs)) {
        await this.#request("readwrite", (store) => store.delete(key));
        return null;
      }
      return { snapshot: entry.snapshot, tag: entry.tag };
    } catch {
      return null;
    }
  }

  /** Keeps `snapshot` under `key` in place of any other, as taken now. */
  async save(key, { snapshot, tag }) {
    if (!(snapshot instanceof ArrayBuffer) || typeof tag !== "string") return;
    const entry = { key, tag, takenAt: this.#now(), snapshot };
    await this.#request("readwrite", (store) => store.put(entry)).catch(() => {});
  }

  /** Deletes the snapshot under `key` if it is the one of `tag` (a newer one stays). */
  async drop(key, tag) {
    await this.#request("readwrite", (store) => {
      const read = store.get(key);
      read.addEventListener("success", () => {
        if (read.result?.tag === tag) store.delete(key);
      });
      return read;
    }).catch(() => {});
  }

  /** Runs `use(store)` in a transaction; resolves to its request's result once committed. */
  async #request(mode, use) {
    const db = await this.#open();
    if (!db) throw new Error("IndexedDB is not available");
    const transaction = db.transaction(STORE, mode);
    const committed = new Promise((resolve, reject) => {
      transaction.oncomplete = resolve;
      transaction.onerror = () => reject(transaction.error ?? new Error("IndexedDB transaction failed"));
      transaction.onabort = () => reject(transaction.error ?? new Error("IndexedDB transaction aborted"));
    });
    const [result] = await Promise.all([done(use(transaction.objectStore(STORE))), committed]);
    return result;
  }

  #open() {
    this.#db ??= this.#connect().catch(() => null);
    return this.#db;
  }

  #connect() {
    if (!this.#indexedDB) return Promise.resolve(null);
    return new Promise((resolve, reject) => {
      const request = this.#indexedDB.open(DB_NAME, DB_VERSION);
      const timer = setTimeout(() => reject(new Error("IndexedDB did not open")), OPEN_TIMEOUT_MS);
      request.onupgradeneeded = () => request.result.createObjectStore(STORE, { keyPath: "key" });
      request.onsuccess = () => {
        clearTimeout(timer);
        const db = request.result;
        db.onversionchange = () => db.close(); // a newer page's upgrade is not held up
        resolve(db);
      };
      request.onerror = () => {
        clearTimeout(timer);
        reject(request.error ?? new Error("IndexedDB did not open"));
      };
    });
  }
}
