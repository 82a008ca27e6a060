"""worker_static/snapshot-store.js in Chromium: the Pyodide snapshot a page keeps in IndexedDB
across visits (saved, replaced, dropped by its tag, expired after a day, optional)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.worker_js.test_supervisor import FakeScheduler


@pytest.fixture(autouse=True)
def _fast_secrets() -> None:
    """Overrides the autouse fixture of tests/conftest.py: these tests need no database."""


@pytest.fixture(scope="module")
def page(browser: Any) -> Iterator[Any]:
    scheduler = FakeScheduler()
    scheduler.start()
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{scheduler.origin}/harness.html")
    page.wait_for_function("window.harnessReady === true")
    yield page
    context.close()
    scheduler.stop()


STEPS = """async () => {
  const { StoredSnapshots, SNAPSHOT_MAX_AGE_MS } = await import("/worker/snapshot-store.js");
  let now = 1_000_000;
  const stored = new StoredSnapshots({ now: () => now });
  const key = "a test's key";
  const bytes = (n) => new Uint8Array([n, n, n]).buffer;
  const read = async (from = stored) => {
    const entry = await from.load(key);
    return entry && { tag: entry.tag, bytes: [...new Uint8Array(entry.snapshot)] };
  };
  const seen = { empty: await read() };
  await stored.save(key, { snapshot: bytes(1), tag: "a" });
  seen.saved = await read();
  await stored.drop(key, "b");
  seen.afterDropOfAnotherTag = await read();
  await stored.save(key, { snapshot: bytes(2), tag: "b" });
  seen.replaced = await read(new StoredSnapshots({ now: () => now }));
  now += SNAPSHOT_MAX_AGE_MS;
  seen.aDayOld = await read();
  now += 1;
  seen.older = await read();
  now -= 10;
  seen.afterExpiry = await read();
  await stored.save(key, { snapshot: bytes(3), tag: "c" });
  await stored.drop(key, "c");
  seen.dropped = await read();
  const none = new StoredSnapshots({ indexedDB: null });
  await none.save(key, { snapshot: bytes(4), tag: "d" });
  seen.withoutIndexedDB = await read(none);
  const failing = new StoredSnapshots({ indexedDB: { open() { throw new Error("denied"); } } });
  await failing.save(key, { snapshot: bytes(5), tag: "e" });
  await failing.drop(key, "e");
  seen.failing = await read(failing);
  seen.afterAll = await read();
  return seen;
}"""


def test_a_snapshot_is_kept_replaced_dropped_by_tag_and_expires(page: Any) -> None:
    seen = page.evaluate(STEPS)
    assert seen["empty"] is None
    assert seen["saved"] == {"tag": "a", "bytes": [1, 1, 1]}
    assert seen["afterDropOfAnotherTag"] == {"tag": "a", "bytes": [1, 1, 1]}
    assert seen["replaced"] == {"tag": "b", "bytes": [2, 2, 2]}
    assert seen["aDayOld"] == {"tag": "b", "bytes": [2, 2, 2]}
    assert seen["older"] is None
    assert seen["afterExpiry"] is None  # deleted, not only skipped
    assert seen["dropped"] is None
    assert seen["withoutIndexedDB"] is None
    assert seen["failing"] is None
    assert seen["afterAll"] is None
