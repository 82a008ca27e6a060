"""worker_static/store-cache.js under node: what a worker keeps of the portal's store.

A StoreCache is given a fetch that answers from a dict of objects and counts what it was asked;
each test reads back the bytes each get() gave (or its error) and how many requests went out.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

STORE_CACHE_JS = Path(__file__).resolve().parents[2] / "worker_static" / "store-cache.js"

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")

# Reads {objects: {name: text}, maxBytes, steps: [[sha256 | [sha256, file], ...], ...]} on
# stdin: each step's gets run at the same time, the steps one after another. Answers each get's
# text or error, and the URLs fetched. The store and the Pyodide folder serve the same objects.
NODE_SCRIPT = """
import { readFileSync } from "node:fs";
const { StoreCache } = await import(process.argv[1]);
const { objects, maxBytes, steps } = JSON.parse(readFileSync(0, "utf8"));
const fetched = [];
const fetch = async (url) => {
  fetched.push(url);
  const name = url.split("/").pop();
  if (!(name in objects)) {
    const message = `the store has no object ${name}`;
    const body = JSON.stringify({ error: { code: "ENOTFOUND", message } });
    return new Response(body, { status: 404 });
  }
  return new Response(objects[name], { status: 200 });
};
const cache = new StoreCache({
  storeURL: "http://portal.test/store/", pyodideURL: "http://portal.test/pyodide/", maxBytes, fetch,
});
const answers = [];
for (const step of steps) {
  answers.push(await Promise.all(step.map((get) => cache.get(...[get].flat()).then(
    (bytes) => ({ text: new TextDecoder().decode(bytes) }),
    (error) => ({ error: error.message })))));
}
process.stdout.write(JSON.stringify({ answers, fetched, downloads: cache.downloads }));
"""


def name(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def replay(objects: dict[str, str], steps: list[list[str]], max_bytes: int = 1 << 20) -> Any:
    stdin = json.dumps({"objects": objects, "maxBytes": max_bytes, "steps": steps})
    completed = subprocess.run(
        ["node", "--input-type=module", "-e", NODE_SCRIPT, STORE_CACHE_JS.as_uri()],
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(completed.stdout)


def test_an_object_asked_for_by_many_sandboxes_and_jobs_is_fetched_once() -> None:
    wheel = "a wheel's bytes"
    outcome = replay({name(wheel): wheel}, [[name(wheel)] * 3, [name(wheel)]])

    assert outcome["answers"] == [[{"text": wheel}] * 3, [{"text": wheel}]]
    assert outcome["fetched"] == [f"http://portal.test/store/{name(wheel)}"]


def test_bytes_that_are_not_the_objects_are_refused_and_not_kept() -> None:
    forged = name("the real bytes")
    outcome = replay({forged: "other bytes"}, [[forged], [forged]])

    refusal = f"blob {forged} of the store hashes to {name('other bytes')}, not {forged}"
    assert [answer[0]["error"].startswith(refusal) for answer in outcome["answers"]] == [True, True]
    assert outcome["downloads"] == 2


def test_a_missing_object_is_an_error_that_says_what_the_store_said() -> None:
    missing = name("never stored")
    outcome = replay({}, [[missing]])

    assert outcome["answers"] == [
        [
            {
                "error": f"blob {missing} of the store could not be fetched from the portal:"
                f" HTTP 404 (ENOTFOUND: the store has no object {missing})"
            }
        ]
    ]


def test_a_name_that_is_not_a_sha256_is_refused_without_a_request() -> None:
    outcome = replay({}, [["../accounts/"]])

    assert outcome["answers"] == [[{"error": '"../accounts/" names no object of the store'}]]
    assert outcome["fetched"] == []


def test_the_least_recently_used_objects_go_when_the_cache_is_full() -> None:
    first, second, third = "1" * 10, "2" * 10, "3" * 10
    objects = {name(text): text for text in (first, second, third)}
    steps = [[name(first)], [name(second)], [name(first)], [name(third)], [name(first)]]
    steps += [[name(second)]]
    outcome = replay(objects, steps, max_bytes=20)

    # first and second fit; third pushes out second (first was used after it), which comes again
    assert [url.rsplit("/", 1)[1] for url in outcome["fetched"]] == [
        name(first),
        name(second),
        name(third),
        name(second),
    ]


def test_a_pyodide_package_file_comes_from_the_pyodide_folder_checked_against_the_lock() -> None:
    numpy = "numpy's wheel"
    file = "numpy-2.2.5-cp314-cp314-pyodide_2026_0_wasm32.whl"
    steps: list[list[Any]] = [[[name(numpy), file]], [[name(numpy), file]]]
    steps += [[[name("the lock's other hash"), file]], [[name("elsewhere"), "../store/x"]]]
    outcome = replay({file: numpy}, steps)

    assert outcome["answers"][:2] == [[{"text": numpy}], [{"text": numpy}]]
    assert outcome["answers"][2][0]["error"].startswith(f"Pyodide package file {file} hashes to")
    assert outcome["answers"][3] == [{"error": '"../store/x" names no file of the Pyodide folder'}]
    assert outcome["fetched"] == [f"http://portal.test/pyodide/{file}"] * 2


def test_pyodide_s_own_files_are_kept_by_name_without_a_hash() -> None:
    wasm = "the interpreter"
    outcome = replay({"pyodide.asm.wasm": wasm}, [[[None, "pyodide.asm.wasm"]] * 3] * 2)

    assert outcome["answers"] == [[{"text": wasm}] * 3] * 2
    assert outcome["fetched"] == ["http://portal.test/pyodide/pyodide.asm.wasm"]
