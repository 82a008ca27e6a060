"""Deploying, feeding, closing and cancelling jobs over HTTP, and who may touch them."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.test import Client

from dcp.protocol.credits import to_units
from portal.api.models import ApiKey
from portal.api.services import create_api_key
from portal.bank.selectors import balance_of
from portal.scheduler.models import Job, JobStatus, SliceInput
from portal.scheduler.notify import WORKERS_GROUP, job_group
from portal.wallet.models import Key, KeyKind
from portal.wallet.services import change_key_passphrase, create_key

from .conftest import Caller, compute, error_of

DOUBLE = {"language": "js", "function": "function (x) { return x * 2 }"}


def deploy(caller: Caller, **body) -> str:
    response = caller.post("/api/v0/job", {"work": DOUBLE, **body})
    assert response.status_code == 201, response.content
    return response.json()["jobId"]


def listen(group: str) -> str:
    """A channel in `group` of the channel layer, to see what the API tells clients/workers."""
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(group, channel)
    return channel


def received(channel: str) -> dict:
    return async_to_sync(get_channel_layer().receive)(channel)


def test_deploying_a_job_moves_offer_times_slices_into_escrow(bearer, account, identity):
    job_id = deploy(bearer, slices=[1, 2, 3], slicePaymentOffer=0.01, public={"name": "doubling"})
    job = Job.objects.get(pk=job_id)
    assert job.is_open and job.input_kind == "values" and job.total == 3
    assert job.identity == identity.address and job.payer == account.address
    assert job.offer == to_units("0.01") and job.language == "js" and job.name == "doubling"
    assert list(SliceInput.objects.filter(job=job).values_list("datum", flat=True)) == [1, 2, 3]
    assert balance_of(account.address) == to_units("9.97")
    assert balance_of(f"escrow:{job_id}") == to_units("0.03")


@pytest.mark.django_db(transaction=True)  # announcements go out when a transaction commits
def test_deploying_wakes_the_workers(bearer):
    workers = listen(WORKERS_GROUP)
    deploy(bearer, slices=[1])
    assert received(workers) == {"type": "work.available"}


def test_market_value_pays_per_cpu_second_from_a_budget_of_the_configured_offer(
    bearer, account, settings
):
    settings.MARKET_SLICE_OFFER = "0.002"
    settings.MARKET_CPU_SECOND_PRICE = "0.0005"
    for body in ({"slicePaymentOffer": "MARKET_VALUE"}, {}):  # the default offer
        job = Job.objects.get(pk=deploy(bearer, slices=[1, 2], **body))
        assert (job.offer, job.cpu_rate, job.estimating) == (0, to_units("0.0005"), True)
        assert balance_of(f"escrow:{job.id}") == to_units("0.004")  # 0.002 x 2 slices
    added = bearer.post(f"/api/v0/job/{job.id}/slices", {"slices": [3]})
    assert added.status_code == 201 and added.json()["status"] == "estimation"
    assert balance_of(f"escrow:{job.id}") == to_units("0.006")
    topped = bearer.post(f"/api/v0/job/{job.id}/escrow", {"amount": "0.5"})
    assert topped.json() == {"jobId": job.id, "escrow": "0.506"}
    assert balance_of(account.address) == to_units("10") - to_units("0.004") - to_units("0.506")


def test_an_idempotency_key_of_a_batch_used_again_for_an_escrow_of_another_amount_is_409(
    bearer,
):
    job_id = deploy(bearer, slices=[1])  # MARKET_VALUE
    key = {"Idempotency-Key": "batch-0001"}
    assert bearer.post(f"/api/v0/job/{job_id}/slices", {"slices": [2]}, **key).status_code == 201
    again = bearer.post(f"/api/v0/job/{job_id}/escrow", {"amount": "0.5"}, **key)
    assert (again.status_code, error_of(again)["code"]) == (409, "EIDEMPOTENCY")
    assert balance_of(f"escrow:{job_id}") == to_units("0.002")  # nothing more moved


def test_escrow_is_refused_for_a_job_paid_per_slice_and_for_nothing(bearer):
    job_id = deploy(bearer, slices=[1], slicePaymentOffer="0.01")
    refused = bearer.post(f"/api/v0/job/{job_id}/escrow", {"amount": "1"})
    assert (refused.status_code, error_of(refused)["code"]) == (400, "EINVALID")
    assert "pays per slice" in error_of(refused)["message"]
    zero = bearer.post(f"/api/v0/job/{job_id}/escrow", {"amount": 0})
    assert (zero.status_code, error_of(zero)["code"]) == (400, "EINVALID")


def test_an_offer_may_be_a_decimal_string(bearer):
    job_id = deploy(bearer, slices=[1], slicePaymentOffer="0.000000001")
    assert Job.objects.get(pk=job_id).offer == 1


def test_a_null_slice_is_an_input_like_any_other(bearer, volunteer):
    job_id = deploy(bearer, slices=[None, [None], {"x": None}])
    assert list(
        SliceInput.objects.filter(job_id=job_id).order_by("number").values_list("datum", flat=True)
    ) == [None, [None], {"x": None}]
    assert compute(job_id, volunteer, double=False) == [1, 2, 3]


def test_a_job_with_no_slices_yet_is_deployed_open(bearer):
    job_id = deploy(bearer)
    status = bearer.get(f"/api/v0/job/{job_id}/status").json()
    assert status["open"] is True and status["totalSlices"] == 0


def test_too_few_credits_is_402_and_deploys_nothing(bearer, account):
    before = balance_of(account.address)
    response = bearer.post(
        "/api/v0/job", {"work": DOUBLE, "slices": [1, 2], "slicePaymentOffer": 6}
    )
    assert response.status_code == 402
    assert error_of(response)["code"] == "ENOFUNDS"
    assert Job.objects.count() == 0
    assert balance_of(account.address) == before


def test_an_offer_no_account_could_pay_is_402_not_an_overflow(bearer):
    slices = list(range(100))
    response = bearer.post(
        "/api/v0/job", {"work": DOUBLE, "slices": slices, "slicePaymentOffer": 999_999_999}
    )
    assert response.status_code == 402
    assert Job.objects.count() == 0


def test_a_user_outside_first_devs_may_not_deploy(user):
    identity = create_key(user=user, kind=KeyKind.IDENTITY, label="laptop")
    account = Key.objects.get(user=user, is_default=True)
    _, token = create_api_key(
        user=user, label="x", identity_address=identity.address, account_address=account.address
    )
    response = Caller(Client(), f"Bearer {token}").post(
        "/api/v0/job", {"work": DOUBLE, "slices": [1]}
    )
    assert response.status_code == 403
    assert error_of(response)["code"] == "ENOTFIRSTDEV"


def test_paying_with_a_passphrase_protected_account_is_refused_clearly(bearer, account):
    change_key_passphrase(key=account, current="", new="secret")
    response = bearer.post("/api/v0/job", {"work": DOUBLE, "slices": [1]})
    assert response.status_code == 403
    assert error_of(response) == {
        "code": "EKEYLOCKED",
        "message": "this account key is protected by a passphrase: give it in "
        "account.password when deploying, remove it, or use the Python client",
    }
    assert Job.objects.count() == 0


def test_an_api_key_pays_only_from_its_own_account(bearer, first_dev, account):
    other = create_key(user=first_dev, kind=KeyKind.ACCOUNT, label="savings")
    response = bearer.post(
        "/api/v0/job", {"work": DOUBLE, "slices": [1], "account": {"address": other.address}}
    )
    assert response.status_code == 403
    assert error_of(response)["code"] == "EACCOUNT"
    for address in (account.address, account.address[2:], account.address.lower()):
        body = {"work": DOUBLE, "slices": [1], "account": {"address": address}}
        assert bearer.post("/api/v0/job", body).status_code == 201


def test_basic_auth_pays_from_any_of_the_users_accounts_given_with_or_without_0x(
    basic, first_dev, account
):
    assert Job.objects.get(pk=deploy(basic, slices=[1])).payer == account.address
    other = create_key(user=first_dev, kind=KeyKind.ACCOUNT, label="savings")
    job_id = deploy(basic, slices=[1], slicePaymentOffer=0, account={"address": other.address[2:]})
    assert Job.objects.get(pk=job_id).payer == other.address


def test_basic_auth_may_not_pay_from_someone_elses_account(basic, stranger):
    eve = Key.objects.get(user__email="eve@example.com", kind=KeyKind.ACCOUNT)
    body = {"work": DOUBLE, "slices": [1], "account": {"address": eve.address}}
    response = basic.post("/api/v0/job", body)
    assert response.status_code == 403
    assert error_of(response)["code"] == "EACCOUNT"
    response = basic.post("/api/v0/job", {**body, "account": {"address": "0x123"}})
    assert response.status_code == 400


def test_an_idempotency_key_deploys_and_pays_once(bearer, account):
    first = bearer.post(
        "/api/v0/job", {"work": DOUBLE, "slices": [1]}, **{"Idempotency-Key": "abcdefgh"}
    )
    again = bearer.post(
        "/api/v0/job", {"work": DOUBLE, "slices": [1]}, **{"Idempotency-Key": "abcdefgh"}
    )
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert Job.objects.count() == 1
    assert balance_of(account.address) == to_units("9.999")


def test_the_same_idempotency_key_of_two_identities_makes_two_jobs(bearer, stranger):
    headers = {"Idempotency-Key": "shared-key-1"}
    one = bearer.post("/api/v0/job", {"work": DOUBLE}, **headers).json()["jobId"]
    two = stranger.post("/api/v0/job", {"work": DOUBLE}, **headers).json()["jobId"]
    assert one != two


@pytest.mark.django_db(transaction=True)  # announcements go out when a transaction commits
def test_adding_slices_funds_them_and_a_resent_batch_adds_nothing(bearer, account):
    job_id = deploy(bearer, slices=[1], slicePaymentOffer=0.01)
    workers = listen(WORKERS_GROUP)
    headers = {"Idempotency-Key": "batch-0001"}
    response = bearer.post(f"/api/v0/job/{job_id}/slices", {"slices": [2, 3]}, **headers)
    assert response.status_code == 201
    assert response.json()["totalSlices"] == 3
    assert received(workers) == {"type": "work.available"}
    again = bearer.post(f"/api/v0/job/{job_id}/slices", {"slices": [2, 3]}, **headers)
    assert again.json()["totalSlices"] == 3
    assert balance_of(account.address) == to_units("9.97")
    assert Job.objects.get(pk=job_id).data_of([1, 2, 3]) == [1, 2, 3]


def test_adding_slices_to_a_closed_job_is_409(bearer):
    job_id = deploy(bearer, slices=[1])
    assert bearer.post(f"/api/v0/job/{job_id}/close").json()["open"] is False
    response = bearer.post(f"/api/v0/job/{job_id}/slices", {"slices": [2]})
    assert response.status_code == 409
    assert error_of(response)["code"] == "ECLOSED"


def test_adding_slices_needs_at_least_one(bearer):
    job_id = deploy(bearer, slices=[1])
    response = bearer.post(f"/api/v0/job/{job_id}/slices", {"slices": []})
    assert response.status_code == 400
    assert error_of(response)["code"] == "EINVALID"


def test_adding_slices_without_the_credits_is_402_and_adds_nothing(bearer):
    job_id = deploy(bearer, slices=[1], slicePaymentOffer=1)
    response = bearer.post(f"/api/v0/job/{job_id}/slices", {"slices": list(range(10))})
    assert response.status_code == 402
    assert Job.objects.get(pk=job_id).total == 1


@pytest.mark.django_db(transaction=True)  # announcements go out when a transaction commits
def test_closing_a_computed_job_completes_it_and_tells_its_clients(bearer, volunteer, account):
    job_id = deploy(bearer, slices=[1, 2], slicePaymentOffer=0.5)
    compute(job_id, volunteer)
    clients = listen(job_group(job_id))
    status = bearer.post(f"/api/v0/job/{job_id}/close").json()
    assert status["status"] == "finished" and status["completedSlices"] == 2
    assert received(clients)["event"] == "complete"
    assert balance_of(account.address) == to_units(9)
    assert balance_of(f"escrow:{job_id}") == 0


@pytest.mark.django_db(transaction=True)  # announcements go out when a transaction commits
def test_cancelling_refunds_and_tells_workers_and_clients(bearer, account):
    job_id = deploy(bearer, slices=[1, 2, 3], slicePaymentOffer=1)
    workers, clients = listen(WORKERS_GROUP), listen(job_group(job_id))
    response = bearer.delete(f"/api/v0/job/{job_id}", {"reason": "changed my mind"})
    assert response.status_code == 204
    assert response.content == b""
    assert received(workers) == {"type": "job.abort", "job": job_id}
    assert received(clients)["data"] == {"code": "ECANCELLED", "reason": "changed my mind"}
    assert balance_of(account.address) == to_units(10)
    details = bearer.get(f"/api/v0/job/{job_id}").json()
    assert details["status"] == "cancelled" and details["cancelReason"] == "changed my mind"
    assert bearer.delete(f"/api/v0/job/{job_id}").status_code == 204


def test_cancelling_a_finished_job_is_409(bearer, volunteer):
    job_id = deploy(bearer, slices=[1])
    compute(job_id, volunteer)
    bearer.post(f"/api/v0/job/{job_id}/close")
    response = bearer.delete(f"/api/v0/job/{job_id}")
    assert response.status_code == 409
    assert Job.objects.get(pk=job_id).status == JobStatus.FINISHED


def test_job_details_and_status(bearer, account):
    job_id = deploy(
        bearer,
        slices=[1, 2],
        slicePaymentOffer=0.25,
        public={"name": "n", "description": "d"},
        requirements={"discrete": True},
    )
    details = bearer.get(f"/api/v0/job/{job_id}").json()
    assert details["slicePaymentOffer"] == "0.25"
    assert details["account"] == account.address
    assert details["public"] == {"name": "n", "description": "d"}
    assert details["requirements"] == {"discrete": True}
    status = bearer.get(f"/api/v0/job/{job_id}/status").json()
    assert status == {
        "jobId": job_id,
        "status": "running",
        "open": True,
        "totalSlices": 2,
        "distributedSlices": 0,
        "completedSlices": 0,
        "activeSlices": 0,
        "failedSlices": 0,
        "totalGPUTime": 0,
        "waiting": None,
        "verification": None,
    }


def test_unknown_requirements_are_refused_not_dropped(bearer):
    response = bearer.post("/api/v0/job", {"work": DOUBLE, "requirements": {"gpu": True}})
    assert response.status_code == 400
    assert "requirements.gpu" in error_of(response)["message"]


def test_listing_and_counting_the_identitys_jobs_newest_first(bearer, stranger):
    first, second = deploy(bearer, slices=[1]), deploy(bearer, slices=[1, 2])
    deploy(stranger, slices=[1])
    jobs = bearer.get("/api/v0/jobs").json()
    assert [job["jobId"] for job in jobs] == [second, first]
    assert jobs[0]["totalSlices"] == 2
    assert bearer.get("/api/v0/jobs/count").json() == {"jobCount": 2}


def test_accounts_list_names_addresses_and_decimal_string_balances(bearer, first_dev, account):
    create_key(user=first_dev, kind=KeyKind.ACCOUNT, label="savings")
    accounts = bearer.get("/api/v0/accounts").json()
    assert accounts[0] == {"name": "default", "address": account.address, "balance": "10"}
    assert accounts[1]["name"] == "savings" and accounts[1]["balance"] == "0"


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("GET", "", None),
        ("GET", "/status", None),
        ("GET", "/result", None),
        ("POST", "/slices", {"slices": [9]}),
        ("POST", "/close", None),
        ("DELETE", "", None),
    ],
)
def test_another_identitys_job_is_404_everywhere(bearer, stranger, method, suffix, body):
    job_id = deploy(bearer, slices=[1])
    response = stranger.request(method, f"/api/v0/job/{job_id}{suffix}", body)
    assert response.status_code == 404
    assert error_of(response)["code"] == "ENOJOB"
    job = Job.objects.get(pk=job_id)
    assert job.status == JobStatus.RUNNING and job.total == 1 and job.is_open


def test_another_identity_of_the_same_user_does_not_see_the_job(bearer, first_dev, account):
    job_id = deploy(bearer, slices=[1])
    laptop2 = create_key(user=first_dev, kind=KeyKind.IDENTITY, label="desktop")
    _, token = create_api_key(
        user=first_dev, label="d", identity_address=laptop2.address, account_address=account.address
    )
    other = Caller(bearer.client, f"Bearer {token}")
    assert other.get(f"/api/v0/job/{job_id}").status_code == 404
    assert other.get("/api/v0/jobs").json() == []


def test_an_unknown_or_malformed_job_id_is_404(bearer):
    for job_id in ("0" * 32, "not-a-job", "%00", "A" * 200):
        response = bearer.get(f"/api/v0/job/{job_id}/status")
        assert response.status_code == 404, job_id
        assert error_of(response)["code"] == "ENOJOB"


def test_a_revoked_key_can_no_longer_touch_its_jobs(bearer):
    job_id = deploy(bearer, slices=[1])
    ApiKey.objects.update(revoked_at=Job.objects.get(pk=job_id).created_at)
    assert bearer.delete(f"/api/v0/job/{job_id}").status_code == 401
    assert Job.objects.get(pk=job_id).status == JobStatus.RUNNING


def test_a_verified_job_pays_its_quorum_into_escrow_and_reports_verification(bearer, account):
    job_id = deploy(bearer, slices=[1, 2], slicePaymentOffer=0.01, verify={"quorum": 3})
    assert balance_of(account.address) == to_units("9.94")  # 2 slices x 3 results x 0.01
    added = bearer.post(f"/api/v0/job/{job_id}/slices", {"slices": [3]})
    assert added.status_code == 201
    assert balance_of(f"escrow:{job_id}") == to_units("0.09")
    status = bearer.get(f"/api/v0/job/{job_id}/status").json()
    assert status["verification"] == {"quorum": 3, "pending": 0, "disputed": 0, "rejected": 0}

    plain = deploy(bearer, slices=[1])
    assert bearer.get(f"/api/v0/job/{plain}/status").json()["verification"] is None
    bad = bearer.post("/api/v0/job", {"work": DOUBLE, "slices": [1], "verify": {"quorum": 1}})
    assert bad.status_code == 400 and "quorum" in error_of(bad)["message"]
    assert balance_of(account.address) == to_units("9.909")  # the refused job took nothing


def test_a_job_may_use_only_blobs_its_user_stored(bearer, account, first_dev, settings, tmp_path):
    """A value referencing a blob the deployer's user has not stored is refused before anything
    is stored or paid; once stored (or claimed), the same deploy goes through."""
    import hashlib
    import io

    from portal.store.services import put_object

    settings.STORE_DIR = tmp_path / "store"
    data = b"\x00\x01 a table of bytes"
    sha = hashlib.sha256(data).hexdigest()
    blob = {"$blob": sha, "size": len(data)}
    response = bearer.post("/api/v0/job", {"work": DOUBLE, "slices": [blob, 2]})
    assert response.status_code == 400
    refusal = error_of(response)
    assert refusal["code"] == "ENOBLOB" and sha in refusal["message"]
    assert not Job.objects.exists() and balance_of(account.address) == to_units("10")

    put_object(user=first_dev, sha256=sha, size=len(data), stream=io.BytesIO(data))
    wrong_size = {"$blob": sha, "size": len(data) + 1}
    response = bearer.post("/api/v0/job", {"work": DOUBLE, "slices": [wrong_size]})
    assert error_of(response)["code"] == "ENOBLOB"
    job_id = deploy(bearer, slices=[blob, 2])
    response = bearer.post(
        f"/api/v0/job/{job_id}/slices", {"slices": [{"$blob": "ab" * 32, "size": 1}]}
    )
    assert error_of(response)["code"] == "ENOBLOB"
    assert Job.objects.get(pk=job_id).total == 2
