"""Data too big for a frame travels through the portal's store: a 20 MiB argument goes up with
the deploy and down to the Worker tab's sandbox, and a 10 MiB result goes up from the sandbox and
down to the client when it is read, byte for byte."""

from __future__ import annotations

import hashlib
import random

from testkit.livesite import LiveSite
from tests.e2e.conftest import deploy_in_background, wait_for
from tests.e2e.portal_flows import Person, start_worker

MIB = 2**20
SEED = 14

# The argument and the result are hashed here as in the program, so the test knows their names.
PROGRAM = f"""
import hashlib, json, random
import dcp

def work(n, data):
    return bytes([n]) + data[::-1][: 10 * 2**20 - 1]

data = random.Random({SEED}).randbytes(20 * 2**20)
job = dcp.compute_for([1], work, args=[data])
results = job.exec(slice_payment_offer="0.01")
got = results[0]
print(json.dumps({{
    "type": type(got).__name__,
    "size": len(got),
    "same": got == work(1, data),
    "result": hashlib.sha256(got).hexdigest(),
}}))
"""


def test_a_20_mib_argument_and_a_10_mib_result_travel_through_the_store(
    payer: Person, volunteer: Person, portal_site: LiveSite
) -> None:
    data = random.Random(SEED).randbytes(20 * MIB)
    argument = hashlib.sha256(data).hexdigest()
    start_worker(volunteer.page, portal_site)

    thread, outcome = deploy_in_background(portal_site, payer.home, PROGRAM)
    result = wait_for(volunteer.page, thread, outcome)

    assert result["type"] == "bytes" and result["size"] == 10 * MIB
    assert result["same"], "the result is not what computing it locally gives"
    served = portal_site.requests_seen()
    assert f'"GET /store/{argument}" 200 {20 * MIB}' in served  # the sandbox fetched the argument
    assert f'"PUT /store/{result["result"]}" 201' in served  # the sandbox stored the result
    assert f'"GET /store/{result["result"]}" 200 {10 * MIB}' in served  # the client read it
