"""The value encoding has two codecs, dcp/protocol/values.py (the reference: the client, the
scheduler, Python slices) and dcp/runtime/values.mjs (JavaScript slices, in the sandbox and under
node). Both are checked against the same pairs, value_vectors.json, so they cannot drift."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

import dcp
from dcp.protocol import values
from dcp.runtime.runtimes import RUNTIME_DIR

VECTORS_PATH = Path(__file__).with_name("value_vectors.json")
VECTORS = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))
BYTES_MARK, BLOB_MARK = "__bytes_hex__", "__blob__"
needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")

# Checks values.mjs against the vectors (argv[1]: its URL, argv[2]: the vectors' path) and prints
# {"maxInline": n, "failures": [...]}: every vector that did not come out as the file says.
NODE_CHECK = """
import { readFileSync } from "node:fs";
const codec = await import(process.argv[1]);
const vectors = JSON.parse(readFileSync(process.argv[2], "utf8"));
const hex = (bytes) => Buffer.from(bytes).toString("hex");
const fromHex = (text) => new Uint8Array(Buffer.from(text, "hex"));
const hasBlob = (value) => JSON.stringify(value).includes('"__blob__"');
const isBytesMark = (value) => Object.keys(value).length === 1 && "__bytes_hex__" in value;
function toNative(value) {
  if (Array.isArray(value)) return value.map(toNative);
  if (value === null || typeof value !== "object") return value;
  if (isBytesMark(value)) return fromHex(value.__bytes_hex__);
  return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, toNative(item)]));
}
function toMarks(value) {
  if (value instanceof Uint8Array) return { __bytes_hex__: hex(value) };
  if (Array.isArray(value)) return value.map(toMarks);
  if (value === null || typeof value !== "object") return value;
  return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, toMarks(item)]));
}
const asMark = (ref) => ({ __blob__: [ref.sha256, ref.size] });
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
const failures = [];
for (const { name, value, encoded } of [...vectors.pairs, ...vectors.decoded_only]) {
  const decoded = toMarks(codec.decode(encoded, asMark));
  if (!same(decoded, value)) failures.push({ name, way: "decode", got: decoded });
}
for (const { name, value, encoded } of vectors.pairs) {
  if (hasBlob(value)) continue; // a JavaScript value has no blob reference to encode
  const got = codec.encode(toNative(value));
  if (!same(got, encoded)) failures.push({ name, way: "encode", got });
}
for (const { name, encoded } of vectors.refused) {
  for (const way of ["decode", "references"]) {
    try {
      codec[way](encoded);
      failures.push({ name, way, got: "not refused" });
    } catch {
      // refused, as it should be
    }
  }
}
process.stdout.write(JSON.stringify({ maxInline: codec.MAX_INLINE_BYTES, failures }));
"""


def native(value: Any) -> Any:
    """A value of the vectors' notation as Python holds it (bytes, BlobRef)."""
    if isinstance(value, list):
        return [native(item) for item in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {BYTES_MARK}:
        return bytes.fromhex(value[BYTES_MARK])
    if set(value) == {BLOB_MARK}:
        return values.BlobRef(*value[BLOB_MARK])
    return {key: native(item) for key, item in value.items()}


def marked(value: Any) -> Any:
    """A decoded Python value in the vectors' notation."""
    if isinstance(value, bytes):
        return {BYTES_MARK: value.hex()}
    if isinstance(value, values.BlobRef):
        return {BLOB_MARK: [value.sha256, value.size]}
    if isinstance(value, list):
        return [marked(item) for item in value]
    if isinstance(value, dict):
        return {key: marked(item) for key, item in value.items()}
    return value


def named(group: str) -> Any:
    return pytest.mark.parametrize("vector", VECTORS[group], ids=lambda vector: vector["name"])


@named("pairs")
def test_the_python_codec_encodes_each_value_as_the_vectors_say(vector: dict[str, Any]) -> None:
    assert values.encode(native(vector["value"])) == vector["encoded"]


@pytest.mark.parametrize(
    "vector", VECTORS["pairs"] + VECTORS["decoded_only"], ids=lambda vector: vector["name"]
)
def test_the_python_codec_decodes_each_encoding_as_the_vectors_say(
    vector: dict[str, Any],
) -> None:
    assert marked(values.decode(vector["encoded"])) == vector["value"]


@named("refused")
def test_the_python_codec_refuses_each_broken_encoding(vector: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        values.decode(vector["encoded"])
    with pytest.raises(ValueError):
        values.references(vector["encoded"])


def test_both_codecs_inline_bytes_up_to_the_same_size() -> None:
    assert VECTORS["MAX_INLINE_BYTES"] == values.MAX_INLINE_BYTES


@needs_node
def test_the_javascript_codec_agrees_with_every_vector() -> None:
    completed = subprocess.run(
        [
            "node",
            "--input-type=module",
            "-e",
            NODE_CHECK,
            (RUNTIME_DIR / "values.mjs").as_uri(),
            str(VECTORS_PATH),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    report = json.loads(completed.stdout)
    assert report["failures"] == []
    assert report["maxInline"] == VECTORS["MAX_INLINE_BYTES"]


@needs_node
def test_a_javascript_work_function_takes_and_returns_bytes_in_its_own_realm() -> None:
    source = (
        "function (x, key) {"
        "  if (!(x instanceof Uint8Array)) throw new TypeError('not bytes');"
        "  return {mixed: x.map((byte, i) => byte ^ key[i % key.length]), raw: new ArrayBuffer(2)};"
        "}"
    )
    job = dcp.compute_for([b"\x00\xff\x10"], source, args=[b"\x0f"], language="js")
    assert job.local_exec().values() == [{"mixed": b"\x0f\xf0\x1f", "raw": b"\x00\x00"}]
