"""One user's heavy request does not hold up everyone else's: a deploy of 300,000 values is
parsed and stored aside, and another client's requests are answered meanwhile."""

from __future__ import annotations

import pytest

from tests.scheduler.conftest import connect_client, receive_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


async def test_a_huge_deploy_does_not_hold_up_another_clients_requests(deployer):
    heavy = await connect_client(deployer)
    other = await connect_client(deployer)
    values = list(range(300_000))
    await heavy.send_json_to(deployer.deploy(input={"kind": "values", "values": values}, offer="0"))
    for n in range(3):
        await other.send_json_to({"type": "jobs", "id": n})
        assert (await receive_until(other, "jobs"))["id"] == n
    # Three round trips of the other client done, and the big deploy still being stored.
    assert await heavy.receive_nothing(timeout=0.01)
    accepted = await receive_until(heavy, "accepted", timeout=120)
    assert accepted["total"] == 300_000
