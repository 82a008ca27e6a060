"""A job's packages and files reach the Worker tab's sandbox: a local module and a local wheel
that the work function imports are stored with the deploy, a package of the portal's Pyodide
package repository is loaded from it, the job's files are its read-only current directory, all
before the first slice; a second job with the same packages on the same tab downloads nothing
again, not even Pyodide's own files."""

from __future__ import annotations

import hashlib

from testkit.livesite import LiveSite
from tests.conftest import PYODIDE_TOY
from tests.e2e.conftest import deploy_in_background, wait_for
from tests.e2e.portal_flows import Person, start_worker
from tests.sandbox.test_sandbox import greet_wheel

PROGRAM = """
import json
import dcp

def work(n):
    import greet, helper, pyodidetoy
    try:
        open("unit.txt", "a")
        changed = "changed its files"
    except PermissionError:
        changed = "read-only"
    return [greet.hello(helper.double(pyodidetoy.triple(n))), open("unit.txt").read(), changed]

job = dcp.compute_for([1, 2, 3], work, fs={files!r})
job.requires({helper!r}, {wheel!r}, "pyodidetoy")
results = job.exec(slice_payment_offer="0.01")
print(json.dumps([results[0], results[1], results[2]]))
"""


def test_a_work_function_on_a_worker_tab_imports_its_packages_and_reads_its_files(
    payer: Person, volunteer: Person, portal_site: LiveSite
) -> None:
    helper = payer.home / "helper.py"
    helper.write_text("def double(n):\n    return 2 * n\n")
    wheel = payer.home / "greet-1.0-py3-none-any.whl"
    wheel.write_bytes(greet_wheel())
    seen_before = len(portal_site.requests_seen().splitlines())
    start_worker(volunteer.page, portal_site, cores=2)

    files = payer.home / "files"
    files.mkdir()
    (files / "unit.txt").write_text("km")
    program = PROGRAM.format(helper=str(helper), wheel=str(wheel), files=str(files))
    thread, outcome = deploy_in_background(portal_site, payer.home, program)
    results = wait_for(volunteer.page, thread, outcome)

    assert results == [[f"hi {6 * n}", "km", "read-only"] for n in (1, 2, 3)]
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert portal_site.requests_seen().count(f'"GET /store/{digest}') == 1

    # The same packages again, for another job.
    thread, outcome = deploy_in_background(portal_site, payer.home, program)
    assert wait_for(volunteer.page, thread, outcome) == results
    log = portal_site.requests_seen().splitlines()
    store_reads = [line for line in log if '"GET /store/' in line]
    assert sum(f"/store/{digest}" in line for line in store_reads) == 1, store_reads
    assert len(store_reads) == 3, store_reads  # the wheel, the helper module, the files: once each
    toy = f'"GET /worker/vendor/pyodide/{PYODIDE_TOY[0]}'
    assert sum(toy in line for line in log) == 1, [line for line in log if "vendor" in line]
    # Pyodide itself too: every sandbox of the tab (two jobs, two cores, the reserve) started
    # from the one download the tab's page keeps.
    ours = log[seen_before:]
    for file in ("pyodide.asm.wasm", "python_stdlib.zip"):
        fetched = [line for line in ours if f'"GET /worker/vendor/pyodide/{file}' in line]
        assert len(fetched) == 1, fetched
