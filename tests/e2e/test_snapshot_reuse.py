"""A Worker tab keeps the sandboxes' Pyodide snapshot in IndexedDB: a tab loaded later in the same
browser starts its first sandbox from it, and one whose tag is not the runtime's is replaced."""

from __future__ import annotations

from typing import Any

from testkit.livesite import LiveSite
from tests.e2e.conftest import deploy_in_background, wait_for
from tests.e2e.portal_flows import Person, start_worker

PROGRAM = """
import json, dcp

def work(x):
    return x * 10 + 1

job = dcp.compute_for([1, 2, 3], work)
print(json.dumps(job.exec(slice_payment_offer="0").values()))
"""

RESTORED = "Pyodide started from the stored snapshot"
TAKEN = "took a Pyodide snapshot"

# The stored entry (without its bytes), or null; never creates the database itself.
READ_ENTRY = """async () => {
  const names = (await indexedDB.databases()).map((db) => db.name);
  if (!names.includes("dcp-sandbox-snapshots")) return null;
  const db = await new Promise((resolve, reject) => {
    const request = indexedDB.open("dcp-sandbox-snapshots");
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  const entries = await new Promise((resolve, reject) => {
    const request = db.transaction("snapshots").objectStore("snapshots").getAll();
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  db.close();
  if (entries.length === 0) return null;
  const { tag, takenAt, snapshot } = entries[0];
  return { count: entries.length, tag, takenAt, bytes: snapshot.byteLength };
}"""

# Gives the stored entry another tag, as a snapshot of another runtime would have.
TAMPER = """async (tag) => {
  const db = await new Promise((resolve, reject) => {
    const request = indexedDB.open("dcp-sandbox-snapshots");
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  const store = db.transaction("snapshots", "readwrite").objectStore("snapshots");
  await new Promise((resolve, reject) => {
    const read = store.getAll();
    read.onsuccess = () => {
      const put = store.put({ ...read.result[0], tag });
      put.onsuccess = resolve;
      put.onerror = () => reject(put.error);
    };
    read.onerror = () => reject(read.error);
  });
  db.close();
}"""


def open_tab(context: Any, site: LiveSite) -> tuple[Any, list[str]]:
    page = context.new_page()
    lines: list[str] = []
    page.on("console", lambda message: lines.append(message.text))
    start_worker(page, site)
    return page, lines


def wait_for_entry(page: Any, newer_than: float = 0) -> dict:
    for _ in range(240):
        entry = page.evaluate(READ_ENTRY)
        if entry and entry["takenAt"] > newer_than:
            return entry
        page.wait_for_timeout(250)
    raise AssertionError("no snapshot was stored")


def wait_for_line(page: Any, lines: list[str], text: str) -> None:
    for _ in range(240):
        if any(text in line for line in lines):
            return
        page.wait_for_timeout(250)
    raise AssertionError(f"no console line says {text!r}: {lines}")


def compute(page: Any, site: LiveSite, payer: Person) -> Any:
    thread, outcome = deploy_in_background(site, payer.home, PROGRAM)
    return wait_for(page, thread, outcome)


def test_a_later_tab_starts_from_the_stored_snapshot_and_a_wrong_tag_is_replaced(
    payer: Person, volunteer: Person, portal_site: LiveSite
) -> None:
    context = volunteer.page.context
    first, first_lines = open_tab(context, portal_site)
    assert compute(first, portal_site, payer) == [11, 21, 31]
    stored = wait_for_entry(first)
    assert stored["count"] == 1 and stored["bytes"] > 1_000_000
    assert any(TAKEN in line for line in first_lines)
    assert not any(RESTORED in line for line in first_lines)
    first.close()

    # A tab loaded later restores the stored snapshot as soon as its sandboxes' frame connects.
    second, second_lines = open_tab(context, portal_site)
    wait_for_line(second, second_lines, RESTORED)
    assert compute(second, portal_site, payer) == [11, 21, 31]
    assert stored["tag"] in "\n".join(second_lines)
    assert not any(TAKEN in line for line in second_lines)
    assert wait_for_entry(second) == stored  # kept as it was
    second.evaluate(TAMPER, "another-runtime")
    second.close()

    # A snapshot of another runtime is not used: the tab boots Python and stores a new one.
    third, third_lines = open_tab(context, portal_site)
    wait_for_line(third, third_lines, TAKEN)
    assert compute(third, portal_site, payer) == [11, 21, 31]
    assert not any(RESTORED in line for line in third_lines)
    renewed = wait_for_entry(third, newer_than=stored["takenAt"])
    assert renewed["tag"] == stored["tag"] and renewed["count"] == 1
    third.close()
