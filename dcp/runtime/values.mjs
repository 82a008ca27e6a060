/*
 * Values as they travel, for JavaScript: the value encoding of dcp/protocol/values.py (the
 * reference; read its docstring for the rules), so that JavaScript work functions take and
 * return bytes as Python ones do. Imported by slice.mjs, hence by the browser sandbox (served at
 * /worker/runtime/values.mjs) and by local_exec's node worker.
 *
 *   | value                                   | JSON                                        |
 *   | Uint8Array (a node Buffer too), ArrayBuffer | {"$bytes": "<base64>"}                  |
 *   | an object with a key "$bytes", "$blob"  | {"$object": {<the object, its values       |
 *   |   or "$object"                          |   encoded>}}                                |
 *   | anything else                           | what JSON.stringify makes of it             |
 *
 * Bytes are recognised whatever realm made them (a node `vm` context's Uint8Array too).
 * decode() gives back a Uint8Array for "$bytes", `resolve({sha256, size})` for a blob reference
 * {"$blob": "<sha256>", "size": n} (the sandbox fetches blobs from the portal's store first), and
 * the plain object for "$object". An object holding a tag key but not a tag's shape is refused
 * with the same words as the Python codec. tests/dcp/runtime/value_vectors.json holds pairs both
 * codecs are checked against.
 */

export const BYTES_TAG = "$bytes";
export const BLOB_TAG = "$blob";
export const OBJECT_TAG = "$object";
export const SIZE_KEY = "size";
export const TAG_KEYS = Object.freeze([BYTES_TAG, BLOB_TAG, OBJECT_TAG]);
// Bytes longer than this travel as a blob of the portal's store rather than inline (values.py).
export const MAX_INLINE_BYTES = 256 * 1024;

// Taken at import: a work function that replaces these globals changes what it sees, not this codec.
const { parse: parseJson, stringify: stringifyJson } = JSON;
const { hasOwn, keys: objectKeys } = Object;
const isArray = Array.isArray;
const SHA256 = /^[0-9a-f]{64}$/;
// A character outside standard base64 (a search, not a pattern of the whole text: a text of
// many MiB would overflow a backtracking match).
const NOT_BASE64 = /[^A-Za-z0-9+/=]/;
const fromBase64 = typeof Uint8Array.fromBase64 === "function" ? Uint8Array.fromBase64.bind(Uint8Array) : null;
const NodeBuffer = globalThis.Buffer ?? null;
const uncurryThis = Function.prototype.bind.bind(Function.prototype.call);
// Internal-slot checks, true for a Uint8Array or ArrayBuffer of any realm (instanceof is not).
const typedArrayName = uncurryThis(
  Object.getOwnPropertyDescriptor(Object.getPrototypeOf(Uint8Array.prototype), Symbol.toStringTag).get);
const arrayBufferBytes = uncurryThis(Object.getOwnPropertyDescriptor(ArrayBuffer.prototype, "byteLength").get);

/** Whether `text` names a stored object: a SHA-256 in 64 lowercase hex digits. */
export function isSha256(text) {
  return typeof text === "string" && SHA256.test(text);
}

function hasTagKey(object) {
  return TAG_KEYS.some((key) => hasOwn(object, key));
}

function isUint8Array(value) {
  return value !== null && typeof value === "object" && typedArrayName(value) === "Uint8Array";
}

function isArrayBuffer(value) {
  if (value === null || typeof value !== "object") return false;
  try {
    arrayBufferBytes(value); // throws for anything but an ArrayBuffer
    return true;
  } catch {
    return false;
  }
}

// --------------------------------------------------------------------------------- base64

/** The standard base64 text of a Uint8Array. */
export function toBase64(bytes) {
  if (typeof bytes.toBase64 === "function") return bytes.toBase64();
  if (NodeBuffer) return NodeBuffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
  let binary = "";
  for (let start = 0; start < bytes.length; start += 0x8000) {
    binary += String.fromCharCode.apply(null, bytes.subarray(start, start + 0x8000));
  }
  return btoa(binary);
}

/** Whether `text` is base64 as Python's b64decode(validate=True) takes it: the standard
 * alphabet, padded to a multiple of four characters with at most two "=" at the end. */
function isBase64(text) {
  if (typeof text !== "string" || text.length % 4 !== 0 || NOT_BASE64.test(text)) return false;
  const padding = text.indexOf("=");
  const last = text.length - 1;
  return padding === -1 || padding === last || (padding === last - 1 && text[last] === "=");
}

/** The bytes of standard, padded base64 text; an Error for anything else. */
export function fromBase64Text(text) {
  if (!isBase64(text)) throw new Error('"$bytes" holds text that is not base64');
  if (fromBase64) return fromBase64(text);
  if (NodeBuffer) return new Uint8Array(NodeBuffer.from(text, "base64"));
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let index = 0; index < binary.length; index += 1) bytes[index] = binary.charCodeAt(index);
  return bytes;
}

// ------------------------------------------------------------------------------------ encode

/**
 * The JSON text that carries `value` in the encoding: JSON.stringify's, with bytes tagged and
 * objects that use a tag key escaped. A TypeError, as JSON.stringify throws it, for what it
 * cannot carry (a BigInt, a value that contains itself); `undefined` at the top is null.
 */
export function encodeJson(value) {
  const escaping = new WeakSet(); // objects wrapped in {"$object": ...}, whose own turn is next
  const text = stringifyJson(value === undefined ? null : value, function replace(key, item) {
    const original = this[key]; // before toJSON: a node Buffer has one
    if (isUint8Array(original)) return { [BYTES_TAG]: toBase64(original) };
    if (isArrayBuffer(original)) return { [BYTES_TAG]: toBase64(new Uint8Array(original)) };
    if (item === null || typeof item !== "object" || isArray(item)) return item;
    if (escaping.has(item)) {
      escaping.delete(item);
      return item;
    }
    if (!hasTagKey(item)) return item;
    escaping.add(item);
    return { [OBJECT_TAG]: item };
  });
  return text === undefined ? "null" : text; // a function at the top: as a result, null
}

/** The JSON value that carries `value` in the encoding (see encodeJson). */
export function encode(value) {
  return parseJson(encodeJson(value));
}

// ------------------------------------------------------------------------------------ decode

/**
 * The value an encoded JSON value carries: a Uint8Array for "$bytes", `resolve(ref)` for each
 * blob reference (ref: {sha256, size}; without `resolve` the ref itself), plain objects for
 * "$object". An Error for an object that holds a tag key but not a tag's shape. `Bytes` is the
 * Uint8Array of the realm the value is for (a node `vm` context's): bytes are made of it.
 */
export function decode(value, resolve = null, Bytes = Uint8Array) {
  if (isArray(value)) return value.map((item) => decode(item, resolve, Bytes));
  if (value === null || typeof value !== "object") return value;
  if (!hasTagKey(value)) return decodeEntries(value, resolve, Bytes);
  if (hasOwn(value, BYTES_TAG)) return inRealm(bytesOf(value), Bytes);
  if (hasOwn(value, BLOB_TAG)) {
    const ref = refOf(value);
    return resolve ? inRealm(resolve(ref), Bytes) : ref;
  }
  return decodeEntries(escaped(value), resolve, Bytes);
}

function decodeEntries(object, resolve, Bytes) {
  const decoded = {};
  for (const key of objectKeys(object)) {
    // defineProperty: a key "__proto__" is an own key, as JSON.parse makes it
    Object.defineProperty(decoded, key, { value: decode(object[key], resolve, Bytes), enumerable: true, writable: true, configurable: true });
  }
  return decoded;
}

function inRealm(bytes, Bytes) {
  return Bytes === Uint8Array || !isUint8Array(bytes) || bytes instanceof Bytes ? bytes : new Bytes(bytes);
}

/** The blob references ({sha256, size}) in an encoded value, each once, in order of appearance.
 * An Error as decode() throws it. */
export function references(value) {
  const found = new Map(); // `${sha256}:${size}` -> ref
  const pending = [value];
  while (pending.length > 0) {
    const item = pending.pop();
    if (isArray(item)) {
      for (let index = item.length - 1; index >= 0; index -= 1) pending.push(item[index]);
    } else if (item !== null && typeof item === "object") {
      const children = childrenOf(item, found);
      for (let index = children.length - 1; index >= 0; index -= 1) pending.push(children[index]);
    }
  }
  return [...found.values()];
}

function childrenOf(item, found) {
  if (!hasTagKey(item)) return objectKeys(item).map((key) => item[key]);
  if (hasOwn(item, BYTES_TAG)) {
    bytesOf(item);
    return [];
  }
  if (hasOwn(item, BLOB_TAG)) {
    const ref = refOf(item);
    const key = `${ref.sha256}:${ref.size}`;
    if (!found.has(key)) found.set(key, ref);
    return [];
  }
  const inner = escaped(item);
  return objectKeys(inner).map((key) => inner[key]);
}

function bytesOf(tag) {
  const text = tag[BYTES_TAG];
  if (objectKeys(tag).length !== 1 || typeof text !== "string") {
    throw new Error('a bytes value is {"$bytes": "<base64>"} and nothing else');
  }
  return fromBase64Text(text);
}

function refOf(tag) {
  const names = objectKeys(tag);
  if (names.length !== 2 || !hasOwn(tag, SIZE_KEY)) {
    throw new Error('a blob reference is {"$blob": "<sha256>", "size": n} and nothing else');
  }
  const { [BLOB_TAG]: sha256, [SIZE_KEY]: size } = tag;
  if (!isSha256(sha256)) {
    throw new Error(`a blob is named by its SHA-256 in 64 lowercase hex, not ${stringifyJson(sha256)}`);
  }
  if (!Number.isSafeInteger(size) || size < 0) {
    throw new Error(`a blob's size is a whole number of bytes, not ${stringifyJson(size)}`);
  }
  return { sha256, size };
}

function escaped(tag) {
  const inner = tag[OBJECT_TAG];
  if (objectKeys(tag).length !== 1 || inner === null || typeof inner !== "object" || isArray(inner)) {
    throw new Error('an escaped dict is {"$object": {...}} and nothing else');
  }
  return inner;
}
