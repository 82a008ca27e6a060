"""The browser sandbox (worker_static/sandbox.js) and its page-side pool, in headless Chromium.

No Django server here: testkit.worker_site serves the worker files as the portal does
(worker_static/, the runtime files at /worker/runtime/ and the sandbox's
Content-Security-Policy) and tests/sandbox/harness.html, and records every request so the
tests can show that a work function's network calls never reach it. Needs the vendored
Pyodide: `npm ci --prefix frontend && node frontend/build.mjs`.
"""

from __future__ import annotations

import base64
import hashlib
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dcp.runtime.runtimes import RUNTIME_DIR
from testkit.wheels import make_wheel
from testkit.worker_site import RUNTIME_MODULE_PATH, WorkerSite
from tests.worker_files import require_vendored_pyodide

pytestmark = pytest.mark.e2e

HARNESS = Path(__file__).with_name("harness.html")
RUNTIME_FILE = RUNTIME_DIR / "slice.py"
SLICE_TIMEOUT_MS = 90_000  # a Python slice on a cold sandbox includes loading Pyodide
# The end of a JS work function that tries each of its `attempts` and returns what happened.
TRY_EACH_ATTEMPT = (
    "  const outcomes = {};"
    "  for (const [name, attempt] of Object.entries(attempts)) {"
    "    try { await attempt(); outcomes[name] = 'allowed'; }"
    "    catch (error) { outcomes[name] = `${error.name}: ${error.message}`; }"
    "  }"
    "  return outcomes;"
    "}"
)


require_vendored_pyodide()


@pytest.fixture(autouse=True)
def _fast_secrets() -> None:
    """Overrides the autouse fixture of tests/conftest.py: these tests need no Django."""


@pytest.fixture(scope="module")
def server() -> Iterator[WorkerSite]:
    with WorkerSite({"/harness.html": HARNESS}) as site:
        yield site


@pytest.fixture(scope="module")
def sandbox_page(browser: Any, server: WorkerSite) -> Iterator[Any]:
    """One harness page for the whole module, so Pyodide loads once (the cold start is slow)."""
    context = browser.new_context()
    context.set_default_timeout(SLICE_TIMEOUT_MS)
    page = context.new_page()
    page.goto(f"{server.origin}/harness.html")
    page.wait_for_function("window.harnessReady === true")
    page.evaluate("newPool('main')")
    yield page
    context.close()


class Harness:
    """Runs slices in the page and hands back {value | error, progress, console}."""

    def __init__(self, page: Any, pool: str = "main") -> None:
        self.page = page
        self.pool = pool

    def run(
        self,
        job: dict[str, Any],
        slice_number: int,
        datum: Any,
        timeout_ms: int | None = None,
    ) -> dict[str, Any]:
        options = {} if timeout_ms is None else {"timeoutMs": timeout_ms}
        return self.page.evaluate(
            "([pool, job, n, datum, options]) => runSlice(pool, job, n, datum, options)",
            [self.pool, job, slice_number, datum, options],
        )

    def stats(self) -> list[dict[str, Any]]:
        return self.page.evaluate("(pool) => poolStats(pool)", self.pool)

    def wait_until_idle(self, job: dict[str, Any]) -> None:
        """Until the job's sandboxes have finished what they were doing (a slice is settled for
        the page as soon as it is stopped; its sandbox may take a moment more to come back)."""
        self.page.wait_for_function(
            "([pool, id]) => poolStats(pool).every((s) => s.jobId !== id || !s.busy)",
            arg=[self.pool, job["id"]],
        )


@pytest.fixture
def harness(sandbox_page: Any) -> Harness:
    return Harness(sandbox_page)


_job_numbers = iter(range(1, 1_000_000))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def python_job(source: str, args: list[Any] | None = None) -> dict[str, Any]:
    return {
        "id": f"py-{next(_job_numbers)}",
        "language": "python",
        "source": source,
        "args": args or [],
    }


def js_job(source: str, args: list[Any] | None = None) -> dict[str, Any]:
    return {
        "id": f"js-{next(_job_numbers)}",
        "language": "js",
        "source": source,
        "args": args or [],
    }


# ------------------------------------------------------------------------------- results


def test_python_slice_returns_a_computed_value(harness: Harness) -> None:
    job = python_job("def work(x, a):\n    return {'product': x * a}\n", args=[3])

    outcome = harness.run(job, 1, 7)

    assert outcome.get("error") is None, outcome
    assert outcome["value"] == {"product": 21}


def test_the_last_function_defined_is_the_work_function_when_none_is_named_work(
    harness: Harness,
) -> None:
    job = python_job(
        "def helper(x):\n    return x + 1\n\ndef compute(x):\n    return helper(x) * 2\n"
    )

    assert harness.run(job, 1, 4)["value"] == 10


def test_an_async_python_work_function_is_awaited(harness: Harness) -> None:
    job = python_job(
        "import asyncio\n\nasync def work(x):\n    await asyncio.sleep(0)\n    return x * 3\n"
    )

    assert harness.run(job, 1, 5)["value"] == 15


def test_the_work_function_stays_warm_across_slices_of_a_job(harness: Harness) -> None:
    job = python_job(
        "calls = 0\n\ndef work(x):\n    global calls\n    calls += 1\n    return calls\n"
    )

    results = [harness.run(job, n, n)["value"] for n in (1, 2, 3)]

    assert results == [1, 2, 3]


# ---------------------------------------------------------------------- progress, console


def test_progress_values_reach_the_page(harness: Harness) -> None:
    job = python_job(
        "from dcp import progress as report\n\n"
        "def work(x):\n"
        "    progress(0.25)\n"
        "    report('50%')\n"
        "    progress()\n"
        "    progress(1)\n"
        "    return x\n"
    )

    outcome = harness.run(job, 1, 0)

    assert outcome.get("error") is None, outcome
    assert outcome["progress"] == [0.25, 0.5, None, 1]


def test_a_flood_of_progress_is_thinned_but_the_last_value_arrives(harness: Harness) -> None:
    job = python_job(
        "def work(n):\n    for i in range(n + 1):\n        progress(i / n)\n    return n\n"
    )

    outcome = harness.run(job, 1, 20_000)

    assert outcome["value"] == 20_000
    assert 20 <= len(outcome["progress"]) < 200
    assert outcome["progress"][-1] == 1


def test_print_is_forwarded_as_console(harness: Harness) -> None:
    job = python_job(
        "import sys\n"
        "print('compiling')\n\n"
        "def work(x):\n"
        "    print('hello', x)\n"
        "    print('careful', file=sys.stderr)\n"
        "    return x\n"
    )

    outcome = harness.run(job, 5, 42)

    assert outcome["value"] == 42
    assert outcome["console"] == [
        {"level": "log", "message": "compiling", "slice": None},
        {"level": "log", "message": "hello 42", "slice": 5},
        {"level": "error", "message": "careful", "slice": 5},
    ]


def test_a_flood_of_console_output_is_truncated(harness: Harness) -> None:
    job = python_job("def work(n):\n    for i in range(n):\n        print(i)\n    return n\n")

    outcome = harness.run(job, 1, 1_500)

    assert len(outcome["console"]) == 1_001
    assert outcome["console"][999]["message"] == "999"
    assert outcome["console"][-1] == {
        "level": "error",
        "message": "console output truncated after 1000 messages",
        "slice": 1,
    }


def test_js_console_and_progress_are_forwarded(harness: Harness) -> None:
    job = js_job(
        "function (x) { console.log('seen', x); console.warn({x}); progress('10%'); return x; }"
    )

    outcome = harness.run(job, 2, 9)

    assert outcome["value"] == 9
    assert outcome["progress"] == [0.1]
    assert outcome["console"] == [
        {"level": "log", "message": "seen 9", "slice": 2},
        {"level": "error", "message": '{"x":9}', "slice": 2},
    ]


# ---------------------------------------------------------------------------------- errors


def test_an_exception_comes_back_with_name_and_traceback(harness: Harness) -> None:
    job = python_job("def helper(x):\n    return x / 0\n\ndef work(x):\n    return helper(x)\n")

    error = harness.run(job, 1, 1)["error"]

    assert error["name"] == "ZeroDivisionError"
    assert error["message"] == "division by zero"
    assert error["traceback"].startswith("Traceback (most recent call last):")
    assert 'File "<work function>", line 5, in work' in error["traceback"]
    assert "in helper" in error["traceback"]
    assert "return x / 0" in error["traceback"]
    assert "_dcp" not in error["traceback"] and "dcp sandbox" not in error["traceback"]


def test_a_js_exception_comes_back_with_name_and_stack(harness: Harness) -> None:
    job = js_job("(x) => { throw new RangeError(`too big: ${x}`); }")

    error = harness.run(job, 1, 7)["error"]

    assert error["name"] == "RangeError"
    assert error["message"] == "too big: 7"
    assert "RangeError: too big: 7" in error["traceback"]


def test_a_syntax_error_in_the_work_function_fails_the_slice(harness: Harness) -> None:
    job = python_job("def work(x)\n    return x\n")

    error = harness.run(job, 1, 1)["error"]

    assert error["name"] == "SyntaxError"
    assert "<work function>" in error["traceback"]


def test_a_non_json_serialisable_result_is_refused_clearly(harness: Harness) -> None:
    python = harness.run(python_job("def work(x):\n    return {1, 2}\n"), 3, 0)["error"]
    js = harness.run(js_job("() => 10n"), 4, 0)["error"]

    assert python["name"] == "TypeError"
    assert python["message"].startswith("result of slice 3 is not JSON-serialisable: ")
    assert "set" in python["message"]
    assert js["name"] == "TypeError"
    assert js["message"].startswith("result of slice 4 is not JSON-serialisable: ")


def test_progress_out_of_range_fails_the_slice(harness: Harness) -> None:
    error = harness.run(python_job("def work(x):\n    progress(2)\n    return x\n"), 1, 0)["error"]

    assert error["name"] == "ValueError"
    assert "progress must be between 0 and 1" in error["message"]
    assert "progress(2)" in error["traceback"]


def test_an_invalid_progress_fails_the_slice_even_when_the_work_function_catches_it(
    harness: Harness,
) -> None:
    job = python_job(
        "def work(x):\n    try:\n        progress('nearly done')\n    except ValueError:\n"
        "        pass\n    return x\n"
    )
    python = harness.run(job, 1, 0)["error"]
    js = harness.run(js_job("(x) => { try { progress(-1) } catch {} return x }"), 1, 0)["error"]

    assert python["name"] == "ValueError"
    assert "'nearly done'" in python["message"] or '"nearly done"' in python["message"]
    assert js["name"] == "RangeError"
    assert "progress must be between 0 and 1" in js["message"]


# ------------------------------------------------------------------------- slice runtime


def test_pyodide_runs_the_runtime_module_served_beside_it(
    harness: Harness, server: WorkerSite
) -> None:
    job = python_job(
        "import hashlib, sys\n\n"
        "def work(x):\n"
        "    runtime = sys.modules['dcp_sandbox.slice']\n"
        "    with open(runtime.__file__, 'rb') as file:\n"
        "        return hashlib.sha256(file.read()).hexdigest()\n"
    )

    outcome = harness.run(job, 1, 0)

    assert outcome.get("error") is None, outcome
    assert outcome["value"] == hashlib.sha256(RUNTIME_FILE.read_bytes()).hexdigest()
    assert RUNTIME_MODULE_PATH in server.requested_paths
    assert "/worker/runtime/manifest.mjs" in server.requested_paths
    assert "/worker/runtime/slice.mjs" in server.requested_paths


def test_a_traceback_names_no_frame_of_the_runtime(harness: Harness) -> None:
    job = python_job(
        "from dcp import progress\n\nasync def work(x):\n    progress(0.5)\n    raise KeyError(x)\n"
    )

    outcome = harness.run(job, 1, "missing")

    assert outcome["progress"] == [0.5]
    error = outcome["error"]
    assert error["name"] == "KeyError"
    assert 'File "<work function>", line 5, in work' in error["traceback"]
    assert "dcp_sandbox" not in error["traceback"] and "dcp_runtime" not in error["traceback"]
    assert error["traceback"].count('File "') == 1, error["traceback"]


def test_a_runtime_that_fails_its_integrity_check_is_never_run(
    sandbox_page: Any, server: WorkerSite
) -> None:
    sandbox_page.evaluate("newPool('tampered', {size: 1})")
    sandbox_page.evaluate("reserveReady('main')")  # so that main's reserve loads the true runtime
    server.tampered_runtime = True
    try:
        outcome = Harness(sandbox_page, "tampered").run(
            python_job("def work(x):\n    return x\n"), 1, 0
        )
    finally:
        server.tampered_runtime = False
        sandbox_page.evaluate("poolTerminate('tampered')")

    assert "value" not in outcome, outcome
    assert "integrity" in outcome["error"]["message"], outcome["error"]
    assert "not the runtime" not in str(outcome["console"])


# -------------------------------------------------------------------------------- blobs


def test_blobs_reach_work_functions_as_bytes_once_a_sandbox_and_a_bad_one_fails_its_slice(
    harness: Harness, server: WorkerSite, tmp_path: Path
) -> None:
    table = random.Random(14).randbytes(300 * 1024)
    chunk = b"one slice's own bytes"
    impostor = b"bytes served under a name that is not their hash"
    misnamed = hashlib.sha256(b"what the reference promises").hexdigest()
    for name, data in ((sha256(table), table), (sha256(chunk), chunk), (misnamed, impostor)):
        (tmp_path / f"{name}.json").write_bytes(data)
        server.pages[f"/store/{name}"] = tmp_path / f"{name}.json"
    url = f"{server.origin}/store/{sha256(table)}"
    args = [{"$blob": sha256(table), "size": len(table)}, url]
    good = {"$blob": sha256(chunk), "size": len(chunk)}
    bad = {"$blob": misnamed, "size": len(impostor)}
    python = python_job(
        "import hashlib, js\n\n"
        "def work(datum, table, url):\n"
        "    try:\n"
        "        js.fetch(url)\n"
        "        fetched = 'went out'\n"
        "    except Exception as error:\n"
        "        fetched = str(error)\n"
        "    return [datum, type(table).__name__, hashlib.sha256(table).hexdigest(), fetched]\n",
        args=args,
    )
    javascript = js_job(
        "async function (datum, table, url) {"
        "  let fetched = 'went out';"
        "  try { await fetch(url); } catch (error) { fetched = error.message; }"
        "  return [datum, table.constructor.name, table.length, fetched];"
        "}",
        args=args,
    )

    first = harness.run(python, 1, good)
    failed = harness.run(python, 2, bad)
    again = harness.run(python, 3, good)
    in_js = harness.run(javascript, 1, good)

    blocked = "network access is not allowed in a sandbox"
    assert first.get("error") is None, first
    bytes_of_chunk = {"$bytes": base64.b64encode(chunk).decode()}
    assert first["value"][:3] == [bytes_of_chunk, "bytes", sha256(table)]
    assert blocked in first["value"][3]
    assert failed["error"]["name"] == "StoreError"
    assert (
        f"blob {misnamed} from the portal's store hashes to {sha256(impostor)}"
        in (failed["error"]["message"])
    )
    assert again["value"][0] == bytes_of_chunk  # the same warm sandbox computes on
    assert in_js["value"][:3] == [bytes_of_chunk, "Uint8Array", len(table)]
    assert blocked in in_js["value"][3]
    # Each job's sandbox fetched each blob once (this server forbids the HTTP cache).
    assert server.requested_paths.count(f"/store/{sha256(table)}") == 2
    assert server.requested_paths.count(f"/store/{sha256(chunk)}") == 2
    python_sandboxes = [s for s in harness.stats() if s["jobId"] == python["id"]]
    assert len(python_sandboxes) == 1


# ------------------------------------------------------------------------------ packages


def greet_wheel(*, purelib: bool = True) -> bytes:
    """A tiny pure-Python wheel, greet 1.0: `greet.hello(x)` says hi (or, with `purelib` off, a
    wheel the wheel check refuses)."""
    files = {"greet.py": 'def hello(x):\n    return f"hi {x}"\n'}
    return make_wheel("greet", "1.0", files, purelib=purelib)[1]


def test_a_jobs_wheels_are_installed_before_its_first_slice_and_a_bad_one_fails_the_job(
    harness: Harness, server: WorkerSite, tmp_path: Path
) -> None:
    wheel, impure = greet_wheel(), greet_wheel(purelib=False)
    misnamed = sha256(b"the wheel the job was deployed with")
    for name, data in ((sha256(wheel), wheel), (sha256(impure), impure), (misnamed, wheel)):
        (tmp_path / f"{name}.json").write_bytes(data)  # a suffix the test server knows
        server.pages[f"/store/{name}"] = tmp_path / f"{name}.json"
    file = "greet-1.0-py3-none-any.whl"
    source = "from greet import hello\n\ndef work(x):\n    return hello(x)\n"

    def job_with(digest: str, data: bytes) -> dict[str, Any]:
        package = {"name": "greet", "version": "1.0", "file": file, "sha256": digest}
        return {**python_job(source), "packages": [{**package, "size": len(data)}]}

    computed = harness.run(job_with(sha256(wheel), wheel), 1, 7)
    again = harness.run(job_with(sha256(wheel), wheel), 2, "there")
    swapped = harness.run(job_with(misnamed, wheel), 1, 7)["error"]
    unsafe = harness.run(job_with(sha256(impure), impure), 1, 7)["error"]

    assert computed.get("value") == "hi 7", computed
    assert again.get("value") == "hi there", again
    assert swapped["name"] == "ENOPACKAGE"
    assert f"the job's package greet ({file})" in swapped["message"]
    assert f"hashes to {sha256(wheel)}: these are not its bytes" in swapped["message"]
    assert unsafe["name"] == "EUNSAFEWHEEL"
    assert file in unsafe["message"] and "Root-Is-Purelib" in unsafe["message"]


# --------------------------------------------------------------------------- JavaScript


def test_a_js_work_function_runs_without_loading_pyodide(sandbox_page: Any) -> None:
    sandbox_page.evaluate("newPool('js-only', {size: 1})")
    harness = Harness(sandbox_page, "js-only")
    job = js_job(
        "async function (x, y) {"
        "  const files = performance.getEntriesByType('resource').map((entry) => entry.name);"
        "  return {sum: x + y, files};"
        "}",
        args=[2],
    )

    outcome = harness.run(job, 1, 40)

    assert outcome.get("error") is None, outcome
    assert outcome["value"]["sum"] == 42
    assert not [name for name in outcome["value"]["files"] if "pyodide" in name]
    # The job's sandbox, and a fresh one in reserve: bare too, as this pool never ran Python.
    sandboxes = harness.stats()
    assert sorted((sandbox["jobId"] is None, sandbox["hasPyodide"]) for sandbox in sandboxes) == [
        (False, False),
        (True, False),
    ]
    assert [sandbox["jobId"] for sandbox in sandboxes if not sandbox["reserve"]] == [job["id"]]


# ------------------------------------------------------------------------- one job each

# Run by two jobs: "patch" changes everything a work function can reach in its interpreter,
# "look" reports what it finds. Only the sandbox differs between the jobs.
PYTHON_PATCHER = """
import asyncio, builtins, json, math, os, sys, types
import js
from pyodide.ffi import create_proxy

def tick():
    js.leakTicks = js.leakTicks + 1

async def work(step):
    if step == "patch":
        builtins.leak = 1
        builtins.sorted = lambda *args, **kwargs: ["patched"]
        math.sqrt = lambda value: -1.0
        sys.modules["evil"] = types.ModuleType("evil")
        with open("/tmp/leak.txt", "w") as file:
            file.write("a secret of job A")
        js.leakTicks = 0
        js.setInterval(create_proxy(tick), 5)
        json.dumps = lambda *args, **kwargs: "not JSON"  # the runtime encodes results all the same
    await asyncio.sleep(0.05)
    return {
        "builtin": getattr(builtins, "leak", None),
        "sorted": sorted([3, 1, 2]),
        "sqrt": math.sqrt(16),
        "module": "evil" in sys.modules,
        "file": os.path.exists("/tmp/leak.txt"),
        "timer": getattr(js, "leakTicks", 0) > 0,
    }
"""
PATCHED = {
    "builtin": 1,
    "sorted": ["patched"],
    "sqrt": -1.0,
    "module": True,
    "file": True,
    "timer": True,
}
UNTOUCHED = {
    "builtin": None,
    "sorted": [1, 2, 3],
    "sqrt": 4.0,
    "module": False,
    "file": False,
    "timer": False,
}


def test_a_python_job_leaves_nothing_behind_for_the_next_job(sandbox_page: Any) -> None:
    sandbox_page.evaluate("newPool('python-jobs', {size: 1})")
    harness = Harness(sandbox_page, "python-jobs")
    job_a, job_b = python_job(PYTHON_PATCHER), python_job(PYTHON_PATCHER)

    patched = harness.run(job_a, 1, "patch")
    again = harness.run(job_a, 2, "look")
    [sandbox_a] = [sandbox for sandbox in harness.stats() if sandbox["jobId"] == job_a["id"]]
    seen_by_b = harness.run(job_b, 1, "look")
    sandboxes = harness.stats()

    assert patched.get("value") == PATCHED, patched
    assert again.get("value") == PATCHED, again  # one job's slices share its warm sandbox
    assert seen_by_b.get("value") == UNTOUCHED, seen_by_b
    # Job B needed the pool's only place: job A's sandbox was terminated, not handed over.
    assert sandbox_a["number"] not in [sandbox["number"] for sandbox in sandboxes]
    assert [sandbox["jobId"] for sandbox in sandboxes if not sandbox["reserve"]] == [job_b["id"]]
    assert len(sandboxes) <= 2  # size + the reserve
    # The page's first Python sandbox took a memory snapshot before any job code ran; job B's
    # sandbox started from it, and saw nothing of job A all the same.
    assert [s["fromSnapshot"] for s in sandboxes if s["jobId"] == job_b["id"]] == [True]
    sandbox_page.evaluate("poolTerminate('python-jobs')")


JS_TAMPERER = """async function (step) {
  if (step === "tamper") {
    // Another port, offered as if the page connected again: nobody listens any more.
    const port = new MessageChannel().port1;
    self.dispatchEvent(new MessageEvent("message", { data: { type: "connect", id: 1, port } }));
    self.heard = [];
    self.addEventListener("message", (event) => {
      self.heard.push(event.data);
      event.stopImmediatePropagation();
      postMessage({ type: "result", id: event.data?.id, slice: 1, value: "forged" });
    });
    const attempts = {};
    try {
      postMessage({ type: "result", id: 2, slice: 2, value: "forged" });
      attempts.postMessage = "allowed";
    } catch (error) {
      attempts.postMessage = `${error.name}: ${error.message}`;
    }
    JSON.stringify = () => '"forged"';
    globalThis.Function = function () { return () => "forged"; };
    console.log = () => {};
    Promise.prototype.then = function () { return this; };
    return attempts;
  }
  return { heard: self.heard.map((data) => data.type ?? "?"), stringify: JSON.stringify({}) };
}"""


def test_a_js_job_cannot_hear_or_forge_the_messages_of_its_own_or_a_later_job(
    sandbox_page: Any,
) -> None:
    sandbox_page.evaluate("newPool('js-jobs', {size: 2})")
    harness = Harness(sandbox_page, "js-jobs")
    job_a = js_job(JS_TAMPERER)
    job_b = js_job(
        "(x) => { console.log('b got', x);"
        "  return {doubled: new Function('x', 'return 2 * x')(x), text: JSON.stringify({x})}; }"
    )

    tampered = harness.run(job_a, 1, "tamper")
    own_later_slice = harness.run(job_a, 2, "look")
    b_outcome = harness.run(job_b, 1, 21)
    after_b = harness.run(job_a, 3, "look")

    assert "network access is not allowed in a sandbox" in tampered["value"]["postMessage"]
    # Job A's later slices still come back, encoded with the sandbox's own JSON, and the
    # listener it added to the worker scope heard none of them: they travel on a private port.
    assert own_later_slice.get("value") == {"heard": [], "stringify": '"forged"'}, own_later_slice
    assert b_outcome.get("value") == {"doubled": 42, "text": '{"x":21}'}, b_outcome
    assert b_outcome["console"] == [{"level": "log", "message": "b got 21", "slice": 1}]
    assert after_b.get("value") == {"heard": [], "stringify": '"forged"'}, after_b
    jobs = sorted(str(sandbox["jobId"]) for sandbox in harness.stats())
    assert jobs == sorted([job_a["id"], job_b["id"], "None"])  # two jobs, two sandboxes; a reserve
    sandbox_page.evaluate("poolTerminate('js-jobs')")


def test_the_portal_origins_storage_is_refused_to_work_functions(harness: Harness) -> None:
    js = js_job(
        "async function () {"
        "  const attempts = {"
        "    opfs: () => navigator.storage.getDirectory(),"
        "    estimate: () => navigator.storage.estimate(),"
        "    buckets: () => navigator.storageBuckets.open('b'),"
        "    locks: () => navigator.locks.request('dcp-worker', () => {}),"
        "    indexedDB: () => indexedDB.open('db'),"
        "    caches: () => caches.open('c'),"
        "    fileSystem: () => webkitRequestFileSystemSync(0, 1),"
        "    fromPrototype: () => Object.getOwnPropertyDescriptor("
        "      Object.getPrototypeOf(navigator), 'storage').get.call(navigator),"
        "    redefined: () => Object.defineProperty(navigator, 'storage', {value: 1}),"
        "  };" + TRY_EACH_ATTEMPT
    )
    python = python_job(
        "import js\n\n"
        "async def work(x):\n"
        "    outcomes = {}\n"
        "    for name, attempt in {\n"
        "        'opfs': lambda: js.navigator.storage.getDirectory(),\n"
        "        'locks': lambda: js.navigator.locks.query(),\n"
        "        'indexedDB': lambda: js.indexedDB.open('db'),\n"
        "        'caches': lambda: js.caches.open('c'),\n"
        "    }.items():\n"
        "        try:\n"
        "            await attempt()\n"
        "            outcomes[name] = 'allowed'\n"
        "        except Exception as error:\n"
        "            outcomes[name] = str(error)\n"
        "    return outcomes\n"
    )

    from_js = harness.run(js, 1, None)["value"]
    from_python = harness.run(python, 1, None)["value"]

    refused = "SandboxStorageError: storage access is not allowed in a sandbox"
    for name in ("opfs", "estimate", "buckets", "locks", "indexedDB", "caches", "fileSystem"):
        assert from_js[name] == refused, from_js
    assert from_js["fromPrototype"].startswith("TypeError"), from_js  # nothing left to borrow
    assert from_js["redefined"].startswith("TypeError"), from_js  # and nothing to redefine
    assert all(refused in outcome for outcome in from_python.values()), from_python


# ----------------------------------------------------------------------------- network


def test_js_fetch_from_a_python_work_function_never_reaches_the_server(
    harness: Harness, server: WorkerSite
) -> None:
    url = f"{server.origin}/anything-from-python"
    job = python_job(
        "import js\n\n"
        "def work(url):\n"
        "    try:\n"
        "        js.fetch(url)\n"
        "    except Exception as error:\n"
        "        return f'blocked: {error}'\n"
        "    return 'fetched'\n"
    )

    outcome = harness.run(job, 1, url)

    assert outcome["value"].startswith("blocked: ")
    assert "network access is not allowed in a sandbox" in outcome["value"]
    assert "/anything-from-python" not in server.requested_paths


def test_pyfetch_from_a_python_work_function_never_reaches_the_server(
    harness: Harness, server: WorkerSite
) -> None:
    url = f"{server.origin}/anything-from-pyfetch"
    job = python_job(
        "from pyodide.http import pyfetch\n\n"
        "async def work(url):\n"
        "    response = await pyfetch(url)\n"
        "    return await response.text()\n"
    )

    error = harness.run(job, 1, url)["error"]

    assert "network access is not allowed in a sandbox" in error["message"]
    assert "/anything-from-pyfetch" not in server.requested_paths


def test_network_calls_from_a_js_work_function_never_reach_the_server(
    harness: Harness, server: WorkerSite
) -> None:
    job = js_job(
        "async function (origin) {"
        "  const attempts = {"
        "    fetch: () => fetch(origin + '/anything-fetch'),"
        "    xhr: () => { const r = new XMLHttpRequest(); r.open('GET', origin + '/anything-xhr');"
        "                 r.send(); },"
        "    websocket: () => new WebSocket(origin.replace('http', 'ws') + '/anything-ws'),"
        "    eventSource: () => new EventSource(origin + '/anything-sse'),"
        "    importScripts: () => importScripts(origin + '/anything-importscripts.js'),"
        "    prototypeFetch: () => Object.getPrototypeOf(self).fetch(origin + '/anything-proto'),"
        "    dynamicImport: () => import(origin + '/anything-import.js'),"
        "    nestedWorker: () => new Worker(origin + '/anything-worker.js'),"
        "  };" + TRY_EACH_ATTEMPT
    )

    outcomes = harness.run(job, 1, server.origin)["value"]

    assert all(outcome != "allowed" for outcome in outcomes.values()), outcomes
    for name in ("fetch", "xhr", "websocket", "eventSource", "importScripts", "nestedWorker"):
        assert "network access is not allowed in a sandbox" in outcomes[name], outcomes
    assert not [path for path in server.requested_paths if path.startswith("/anything")]


# ------------------------------------------------------------------------------- timeouts


def test_a_js_slice_that_loops_forever_is_stopped_by_the_timeout(harness: Harness) -> None:
    job = js_job("(x) => { while (true) {} }")

    error = harness.run(job, 1, 0, timeout_ms=1_500)["error"]
    after = harness.run(js_job("(x) => x + 1"), 2, 1)

    assert error["name"] == "NoProgress"
    assert "no progress for 1500 ms" in error["message"]
    assert after["value"] == 2


def test_a_python_slice_that_loops_forever_is_interrupted_and_stays_warm(
    harness: Harness,
) -> None:
    job = python_job(
        "calls = 0\n\n"
        "def work(spin):\n"
        "    global calls\n"
        "    calls += 1\n"
        "    while spin:\n"
        "        pass\n"
        "    return calls\n"
    )
    assert harness.run(job, 1, False)["value"] == 1

    error = harness.run(job, 2, True, timeout_ms=1_500)["error"]
    harness.wait_until_idle(job)
    after = harness.run(job, 3, False)

    assert error["name"] == "NoProgress"
    assert after["value"] == 3


def test_progress_keeps_a_long_slice_alive(harness: Harness) -> None:
    job = python_job(
        "import time\n\n"
        "def work(seconds):\n"
        "    end = time.monotonic() + seconds\n"
        "    while time.monotonic() < end:\n"
        "        progress()\n"
        "    return 'done'\n"
    )

    outcome = harness.run(job, 1, 2.5, timeout_ms=1_000)

    assert outcome.get("error") is None, outcome
    assert outcome["value"] == "done"


def test_aborting_a_job_stops_its_running_slice(sandbox_page: Any) -> None:
    page = sandbox_page
    job = js_job("() => { while (true) {} }")
    page.evaluate("([job]) => startSlice('aborted', 'main', job, 1, null, {timeoutMs: 0})", [job])
    page.wait_for_function("() => poolStats('main').some((sandbox) => sandbox.busy)")

    page.evaluate("([jobId]) => abortJob('main', jobId)", [job["id"]])
    page.wait_for_function("() => window.outcomes.aborted !== undefined")

    assert page.evaluate("window.outcomes.aborted.error.name") == "Aborted"


# --------------------------------------------------------------------------------- memory

PYTHON_MEMORY_BOMB = """
kept = []

def work(size):
    if size == "bomb":
        while True:
            kept.append(bytearray(16 * 2**20))
    return len(bytearray(size))
"""
# Grows a WebAssembly memory of its own, and shrugs off every refusal.
JS_MEMORY_BOMB = """(x) => {
  const memory = new WebAssembly.Memory({ initial: 1 });
  for (;;) {
    try { memory.grow(256); } catch {}
  }
}"""


def test_a_memory_bomb_fails_its_slice_with_out_of_memory_and_its_sandbox_is_replaced(
    sandbox_page: Any,
) -> None:
    sandbox_page.evaluate("newPool('memory', {size: 1})")
    harness = Harness(sandbox_page, "memory")
    python, js = python_job(PYTHON_MEMORY_BOMB), js_job(JS_MEMORY_BOMB)

    before = harness.run(python, 1, 1_000)
    [first_sandbox] = [s["number"] for s in harness.stats() if s["jobId"] == python["id"]]
    bomb = harness.run(python, 2, "bomb")
    after = harness.run(python, 3, 2**20)
    sandboxes = [s["number"] for s in harness.stats() if s["jobId"] == python["id"]]
    js_bomb = harness.run(js, 1, None, timeout_ms=20_000)

    assert before.get("value") == 1_000, before
    error = bomb["error"]
    assert error["name"] == "OutOfMemory", error
    assert error["message"].startswith(f"slice 2 of job {python['id']} ran out of memory: "), error
    assert "more than the 1 GiB a sandbox may use" in error["message"], error
    assert "MemoryError" in error["traceback"], error  # where the work function was stopped
    # The job's next slice runs, in a fresh sandbox: the one that filled its memory is gone.
    assert after.get("value") == 2**20, after
    assert first_sandbox not in sandboxes and len(sandboxes) == 1, sandboxes
    # A work function that swallows the refusals is stopped all the same, before its timeout.
    assert js_bomb["error"]["name"] == "OutOfMemory", js_bomb["error"]
    sandbox_page.evaluate("poolTerminate('memory')")


# ------------------------------------------------------------------------- between slices

LEFTOVER_TIMERS = """async function (step) {
  if (step === "count") {
    globalThis.ticks = 0;
    setInterval(() => { globalThis.ticks += 1; }, 0);
    return "counting";
  }
  setTimeout(() => { for (;;) {} }, 0);  // a busy loop left behind by the job's last slice
  return globalThis.ticks;
}"""


def test_a_jobs_timers_run_only_during_its_slices_and_cannot_delay_another_job(
    sandbox_page: Any,
) -> None:
    sandbox_page.evaluate("newPool('timers', {size: 2})")
    harness = Harness(sandbox_page, "timers")
    job_a = js_job(LEFTOVER_TIMERS)
    job_b = python_job("def work(x):\n    return x * 2\n")  # another user's job, same tab

    counting = harness.run(job_a, 1, "count")
    time.sleep(1)  # job A has no slice running now: its interval would tick every few ms
    ticks_while_idle = harness.run(job_a, 2, "last")
    b_outcome = harness.run(job_b, 1, 21)  # job A's busy loop is armed, its sandbox kept warm

    assert counting.get("value") == "counting", counting
    # An idle sandbox runs nothing of its job; a tick or two may slip in as it wakes up.
    assert ticks_while_idle.get("value") is not None and ticks_while_idle["value"] < 5, (
        ticks_while_idle
    )
    assert b_outcome.get("value") == 42, b_outcome
    assert {s["jobId"] for s in harness.stats()} == {job_a["id"], job_b["id"], None}
    sandbox_page.evaluate("poolTerminate('timers')")


def test_a_python_job_reads_the_global_scope_through_js_in_the_sandbox_that_took_the_snapshot(
    browser: Any, server: WorkerSite
) -> None:
    """The first Python sandbox of a page boots Pyodide in its snapshot-taking mode; its job
    still gets the ordinary `js` module (getters such as js.navigator included)."""
    context = browser.new_context()
    context.set_default_timeout(SLICE_TIMEOUT_MS)
    page = context.new_page()
    page.goto(f"{server.origin}/harness.html")
    page.wait_for_function("window.harnessReady === true")
    page.evaluate("newPool('fresh', {size: 1})")
    job = python_job(
        "import js\n\ndef work(x):\n    return [str(js.navigator), js.performance.now() > 0]\n"
    )

    outcome = Harness(page, "fresh").run(job, 1, 0)
    first_sandbox = Harness(page, "fresh").stats()
    context.close()

    assert outcome.get("error") is None, outcome
    assert outcome["value"] == ["[object WorkerNavigator]", True]
    assert [s["fromSnapshot"] for s in first_sandbox if s["jobId"] == job["id"]] == [False]
