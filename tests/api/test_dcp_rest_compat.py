"""dcp-rest's requests, sent to /api/v0 with an API key: they must do what they do there.

Two parts. The example requests dcp-rest documents (its README and its own tests; each body
below says where it comes from) are replayed and their outcome checked. Then schemathesis
generates requests from tests/api/data/dcp-rest-spec.yaml, the portal's description of
dcp-rest's interface, and every one it calls valid must succeed: no 400 or 422, no 5xx, and no
other refusal but too few credits or a job already cancelled. Generated requests name a job, an
account, compute groups and packages that do not exist here; before sending, each such name is
swapped for a real one of the caller's, as a dcp-rest user would name their own.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from django.test import Client
from hypothesis import HealthCheck, settings
from schemathesis.generation import GenerationMode

from dcp.keys.keystore import address_of, create_keystore
from dcp.protocol.credits import to_units
from dcp.runtime.packages import PYODIDE_LOCK, PYODIDE_PATH
from portal.bank import services as bank
from portal.bank.selectors import balance_of
from portal.scheduler.groups import create_group
from portal.scheduler.models import Job
from portal.wallet.models import KeyKind
from portal.wallet.services import change_key_passphrase, create_key, export_keystore

from .conftest import Caller, compute, error_of

SPEC = Path(__file__).parent / "data" / "dcp-rest-spec.yaml"

# The shape of dcp-rest's README example ("Deploying a Job to dcp"), our own values: an address
# written without 0x, as there; the tests put the caller's own address there, written the same way.
README_DEPLOY = {
    "slices": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
    "work": {"language": "js", "function": "(n) => { return n + n; }"},
    "account": {"address": "3Fa8c1E07bD2954aC6e1F0b7D38A92c5E4d1B06a"},
}
# dcp-rest's README, "Getting results": the example query.
README_RESULTS_QUERY = "?range=1-10&range=33-35"
# The shape of the body dcp-rest's website example posts (a spelled-out language, an address
# with an empty password), our own values.
WEBSITE_DEPLOY = {
    "slices": [1, 2, 3, 4, 5, 6],
    "work": {"function": "(datum) => { progress(); return datum * 2; }", "language": "JavaScript"},
    "account": {"address": "0x7c2E9aB41F06d38C5e90A1b2D4f7C8e3A6B5d190", "password": ""},
}
# dcp-rest's README, "Basic Auth": the token is base64 of the identity keystore's JSON, a colon
# and its password (our own).
README_BASIC_PASSWORD = "a keystore password 42"
# dcp-rest's test/python/job.py and job-no-oauth.py: compute_for() with the arguments of every
# test there, posted to /job/ (a trailing slash), and test_job_addslc's body. job-no-oauth.py
# pays with account {json, password: ""}, its keystore an object; the tests make one like it.
TESTS_WORK = {"language": "js", "function": "(datum) => { progress(); return datum * 2; }"}
TESTS_SLICES = [1, 2, 3, 4, 5]
TESTS_ADDED = {"sliceData": [100, 200, 300]}


def deploy(caller: Caller, body: dict[str, Any]) -> str:
    response = caller.post("/api/v0/job", body)
    assert response.status_code == 201, response.content
    return response.json()["jobId"]


def with_address(body: dict[str, Any], address: str) -> dict[str, Any]:
    """The body paying from `address`, written the way the body writes its own."""
    written = address if body["account"]["address"].startswith("0x") else address[2:]
    return {**body, "account": {**body["account"], "address": written}}


def dcp_keystore(private_key: bytes, passphrase: str) -> dict[str, Any]:
    """An account keystore in the layout dcp-client writes: 0x address, no id, version last."""
    made = create_keystore(private_key, passphrase, scrypt_n=2**10)
    return {"address": address_of(private_key), "crypto": made["crypto"], "version": 3}


def from_address(caller: Caller, ip: str) -> Caller:
    """The caller on a client address of the test's own: its failed attempts to open a key
    count against that address only, never against another test's."""
    return Caller(Client(REMOTE_ADDR=ip), caller.authorization)


@pytest.fixture
def outside_account() -> tuple[dict[str, Any], str]:
    """An account key the portal never held, as a DCP keystore, with 5 credits in the bank."""
    private_key = os.urandom(32)
    address = address_of(private_key)
    bank.mint(target=bank.account_for_address(address), amount=to_units(5), idempotency_key=address)
    return dcp_keystore(private_key, "correct horse"), address


# --- the README's examples ----------------------------------------------------------------


def test_the_readme_deploy_example_runs_as_javascript_and_its_results_query_works(
    bearer, account, volunteer
):
    job_id = deploy(bearer, with_address(README_DEPLOY, account.address))
    job = Job.objects.get(pk=job_id)
    assert (job.language, job.total, job.payer) == ("js", 10, account.address)
    compute(job_id, volunteer)
    body = bearer.get(f"/api/v0/job/{job_id}/result{README_RESULTS_QUERY}").json()
    assert body["results"] == [{"sliceNumber": n, "value": 2 * n} for n in range(1, 11)]
    assert (body["totalSlices"], body["completedSlices"], body["activeSlices"]) == (10, 10, 0)


@pytest.mark.parametrize(
    ("runtime", "language"),
    [
        ({"name": "pyodide"}, "python"),
        ({"name": "pyodide", "version": "0.23.2", "custom": False}, "python"),
        ({"name": "map-basic", "version": "1.0.0"}, "js"),
    ],
)
def test_the_readme_body_with_a_runtime_is_accepted_and_the_runtime_decides(
    bearer, account, runtime, language
):
    body = with_address(README_DEPLOY, account.address)
    body["work"] = {**body["work"], "runtime": runtime}
    assert Job.objects.get(pk=deploy(bearer, body)).language == language


def test_a_body_without_language_or_runtime_runs_javascript_as_dcp_rest_reads_it(bearer):
    job_id = deploy(bearer, {"work": {"function": "(x) => x"}, "account": {}})
    assert Job.objects.get(pk=job_id).language == "js"


def test_the_website_example_with_javascript_spelled_out_and_an_empty_password(bearer, account):
    job_id = deploy(bearer, with_address(WEBSITE_DEPLOY, account.address))
    job = Job.objects.get(pk=job_id)
    assert (job.language, job.total, job.payer) == ("js", 6, account.address)


def test_the_readme_basic_token_of_a_dcp_layout_identity_keystore_signs_in(identity):
    exported = export_keystore(key=identity, file_passphrase=README_BASIC_PASSWORD)
    # As dcp-client writes an identity keystore: address without 0x, a timestamp, no label.
    keystore = {**exported, "address": exported["address"].removeprefix("0x").lower()}
    keystore.pop("label", None)
    keystore["timestamp"] = "Mon Jan 01 2024 12:00:00 GMT+0000 (Coordinated Universal Time)"
    token = base64.b64encode(f"{json.dumps(keystore)}:{README_BASIC_PASSWORD}".encode())
    caller = Caller(Client(), f"Basic {token.decode()}")
    assert caller.get("/api/v0/accounts").status_code == 200
    assert caller.post("/api/v0/job", {"work": TESTS_WORK, "account": {}}).status_code == 201


# --- dcp-rest's own tests, one job's life -------------------------------------------------


def test_dcp_rest_tests_deploy_read_status_add_slice_data_and_cancel(bearer, account):
    body = {"slices": TESTS_SLICES, "work": TESTS_WORK, "account": {"address": account.address}}
    response = bearer.post("/api/v0/job/", body)
    assert response.status_code == 201
    job_id = response.json()["jobId"]
    assert bearer.get(f"/api/v0/job/{job_id}").json()["totalSlices"] == 5
    assert bearer.get(f"/api/v0/job/{job_id}/result").json()["results"] == []
    added = bearer.post(f"/api/v0/job/{job_id}/slices", TESTS_ADDED)
    assert added.status_code == 201
    status = bearer.get(f"/api/v0/job/{job_id}").json()
    assert (status["totalSlices"], status["status"]) == (8, "running")
    assert Job.objects.get(pk=job_id).data_of([6, 7, 8]) == [100, 200, 300]
    assert bearer.delete(f"/api/v0/job/{job_id}/").status_code == 204
    assert bearer.get(f"/api/v0/job/{job_id}/").json()["status"] == "cancelled"


def test_status_says_completed_once_every_slice_so_far_has_a_result(bearer, volunteer):
    job_id = deploy(bearer, {"slices": [1, 2], "work": TESTS_WORK, "account": {}})
    compute(job_id, volunteer)
    details = bearer.get(f"/api/v0/job/{job_id}").json()
    assert details["status"] == "completed" and details["open"] is True
    assert details["totalCPUTime"] >= 0
    bearer.post(f"/api/v0/job/{job_id}/slices", {"sliceData": [3]})
    assert bearer.get(f"/api/v0/job/{job_id}").json()["status"] == "running"


def test_added_values_come_in_slice_data_or_slices_but_not_both(bearer):
    job_id = deploy(bearer, {"work": TESTS_WORK, "account": {}})
    path = f"/api/v0/job/{job_id}/slices"
    assert bearer.post(path, {"slices": [1]}).status_code == 201
    both = error_of(bearer.post(path, {"slices": [2], "sliceData": [3]}))
    assert both["message"] == "body: give the input values in slices or in sliceData, not both"
    assert "sliceData" in error_of(bearer.post(path, {}))["message"]
    assert Job.objects.get(pk=job_id).total == 1


def test_one_slices_result_by_its_number(bearer, volunteer):
    job_id = deploy(bearer, {"slices": [5, 6, 7], "work": TESTS_WORK, "account": {}})
    compute(job_id, volunteer)
    body = bearer.get(f"/api/v0/job/{job_id}/result/2").json()
    assert body["results"] == [{"sliceNumber": 2, "value": 12}]
    assert bearer.get(f"/api/v0/job/{job_id}/result/9").json()["results"] == []
    assert bearer.get(f"/api/v0/job/{job_id}/result/0").status_code == 400


def test_jobs_count_counts_this_identitys_jobs(bearer, stranger):
    for _ in range(3):
        deploy(bearer, {"work": TESTS_WORK, "account": {}})
    deploy(stranger, {"work": TESTS_WORK, "account": {}})
    assert bearer.get("/api/v0/jobs/count").json() == {"jobCount": 3}


# --- accounts -----------------------------------------------------------------------------


@pytest.mark.parametrize("as_text", [False, True])
def test_an_account_keystore_and_its_password_pay_for_the_job_and_its_later_slices(
    bearer, outside_account, as_text
):
    keystore, address = outside_account
    given = json.dumps(keystore) if as_text else keystore
    body = {"slices": [1, 2], "work": TESTS_WORK, "slicePaymentOffer": "1"}
    job_id = deploy(bearer, {**body, "account": {"json": given, "password": "correct horse"}})
    assert Job.objects.get(pk=job_id).payer == address
    assert bearer.post(f"/api/v0/job/{job_id}/slices", {"sliceData": [3]}).status_code == 201
    assert balance_of(address) == to_units(2)
    assert balance_of(f"escrow:{job_id}") == to_units(3)


def test_a_keystore_that_does_not_open_pays_for_nothing(bearer, outside_account):
    keystore, address = outside_account
    account = {"json": keystore, "password": "wrong"}
    response = from_address(bearer, "192.0.2.10").post(
        "/api/v0/job", {"slices": [1], "work": TESTS_WORK, "account": account}
    )
    assert response.status_code == 403
    refusal = error_of(response)
    assert refusal["code"] == "EACCOUNT" and "account.json did not open" in refusal["message"]
    assert not Job.objects.exists() and balance_of(address) == to_units(5)


def test_an_account_chosen_by_its_label(basic, first_dev):
    savings = create_key(user=first_dev, kind=KeyKind.ACCOUNT, label="savings")
    bank.mint(target=bank.account_for_address(savings.address), amount=10**9, idempotency_key="s")
    job_id = deploy(basic, {"slices": [1], "work": TESTS_WORK, "account": {"label": "savings"}})
    assert Job.objects.get(pk=job_id).payer == savings.address
    response = basic.post("/api/v0/job", {"work": TESTS_WORK, "account": {"label": "nope"}})
    assert response.status_code == 403 and error_of(response)["code"] == "EACCOUNT"


def test_a_password_unlocks_a_passphrase_protected_account_for_the_job(bearer, account):
    change_key_passphrase(key=account, current="", new="s3cret")
    body = {"slices": [1], "work": TESTS_WORK, "slicePaymentOffer": "0.5"}
    account_in = {"password": "guess"}
    wrong = from_address(bearer, "192.0.2.11").post("/api/v0/job", {**body, "account": account_in})
    assert wrong.status_code == 403 and error_of(wrong)["code"] == "EKEYLOCKED"
    account_in = {"address": account.address, "password": "s3cret"}
    job_id = deploy(bearer, {**body, "account": account_in})
    assert bearer.post(f"/api/v0/job/{job_id}/slices", {"sliceData": [2]}).status_code == 201
    assert balance_of(account.address) == to_units(9)


def test_a_keystore_of_ones_own_account_pays_and_an_address_beside_it_must_be_its(bearer, account):
    keystore = export_keystore(key=account, file_passphrase="file pass")
    body = {"work": TESTS_WORK, "account": {"json": keystore, "password": "file pass"}}
    assert Job.objects.get(pk=deploy(bearer, body)).payer == account.address
    body["account"]["address"] = create_key(
        user=account.user, kind=KeyKind.ACCOUNT, label="other"
    ).address
    assert error_of(bearer.post("/api/v0/job", body))["code"] == "EINVALID"


# --- the spec's other fields --------------------------------------------------------------


@pytest.mark.parametrize(
    ("offer", "credits", "per_cpu_second"),
    [
        ("0.005", "0.005", "0"),
        ("MARKET_VALUE", "0", "0.0005"),
        ("", "0", "0.0005"),
        (0.25, "0.25", "0"),
    ],
)
def test_an_offer_is_a_decimal_string_or_the_market_value(
    bearer, settings, offer, credits, per_cpu_second
):
    settings.MARKET_CPU_SECOND_PRICE = "0.0005"
    job_id = deploy(bearer, {"work": TESTS_WORK, "account": {}, "slicePaymentOffer": offer})
    job = Job.objects.get(pk=job_id)
    assert (job.offer, job.cpu_rate) == (to_units(credits), to_units(per_cpu_second))


def test_public_metadata_compute_groups_packages_and_args_are_taken(bearer, first_dev, pyodide):
    group, secret = create_group(owner=first_dev, name="lab")
    public = {"name": "n", "description": "d", "link": "https://example.org/about"}
    body = {
        "work": {"runtime": {"name": "pyodide"}, "function": "def work(x, y):\n    return x\n"},
        "account": {},
        "slices": [{"a": 1}],
        "args": ["y"],
        "public": public,
        "computeGroups": [{"joinKey": group.join_key, "joinSecret": secret}],
        "packages": ["numpy"],
    }
    job = Job.objects.get(pk=deploy(bearer, body))
    assert (job.public, job.args, job.requirements) == (public, ["y"], {"pyodide": ["numpy"]})
    assert list(job.group_links.values_list("group", flat=True)) == [group.pk]


def test_an_empty_remote_data_set_is_no_slices_and_one_with_urls_is_unsupported(bearer):
    job_id = deploy(bearer, {"work": TESTS_WORK, "slices": {"remoteDataSet": []}, "account": {}})
    assert Job.objects.get(pk=job_id).total == 0
    remote = {"remoteDataSet": ["https://example.org/1.json"]}
    response = bearer.post("/api/v0/job", {"work": TESTS_WORK, "slices": remote})
    assert response.status_code == 400
    assert error_of(response)["code"] == "EUNSUPPORTED"


def test_a_custom_runtime_is_unsupported(bearer):
    work = {"runtime": {"name": "pyodide", "custom": True}, "function": "def work(x): return x"}
    refusal = error_of(bearer.post("/api/v0/job", {"work": work}))
    assert refusal == {
        "code": "EUNSUPPORTED",
        "message": "body.work.runtime.custom: custom runtimes are not supported: "
        "use map-basic or pyodide",
    }


# --- generated requests -------------------------------------------------------------------


# The Pyodide packages the portal serves in these tests: what generated names become.
SERVED = ["numpy", *(f"package{n}" for n in range(1, 20))]


@pytest.fixture
def pyodide(settings: Any, tmp_path: Path) -> None:
    """The portal's Pyodide folder, serving the SERVED packages."""
    settings.WORKER_STATIC_DIR = tmp_path / "worker_static"
    folder = Path(settings.WORKER_STATIC_DIR) / PYODIDE_PATH.removeprefix("/worker/")
    folder.mkdir(parents=True)
    lock = {"info": {}, "packages": {}}
    for name in SERVED:
        file = f"{name}-2.0-wasm.whl"
        lock["packages"][name] = {"name": name, "version": "2.0", "file_name": file, "depends": []}
        (folder / file).write_bytes(b"wasm")
    (folder / PYODIDE_LOCK).write_text(json.dumps(lock))


@pytest.fixture
def referents(first_dev, account, volunteer, bearer, pyodide) -> dict[str, Any]:
    """Real things of the caller's for generated requests to name: an open job with results,
    the API key's account (also as a keystore), a compute group."""
    group, secret = create_group(owner=first_dev, name="generated")
    job_id = deploy(bearer, {"work": TESTS_WORK, "slices": [1, 2, 3], "account": {}})
    compute(job_id, volunteer)
    keystore = export_keystore(key=account, file_passphrase="generated")
    return {
        "jobId": job_id,
        "account": {"address": account.address, "label": account.label},
        "json": json.dumps(keystore),
        "password": "generated",
        "group": {"joinKey": group.join_key, "joinSecret": secret},
    }


def named_for_real(body: dict[str, Any], referents: dict[str, Any]) -> dict[str, Any]:
    """A generated deploy body naming the caller's account, compute group and packages."""
    body = dict(body)
    account = dict(body.get("account", {}))
    for name in ("address", "label"):
        if name in account:
            account[name] = referents["account"][name]
    if "json" in account:
        account.update(json=referents["json"], password=referents["password"])
    body["account"] = account
    if "computeGroups" in body:
        body["computeGroups"] = [referents["group"] for _ in body["computeGroups"]]
    if "packages" in body:
        body["packages"] = SERVED[: len(body["packages"])]
    return body


def in_order(query: dict[str, Any]) -> dict[str, Any]:
    """The query with its `range` written start first."""
    if "range" not in query:
        return query
    start, end = sorted(int(n) for n in query["range"].split("-"))
    return {**query, "range": f"{start}-{end}"}


def send(caller: Caller, case: Any, referents: dict[str, Any]) -> Any:
    """Send a generated case through the test client, naming real things."""
    parameters = {**case.path_parameters}
    if "jobId" in parameters:
        parameters["jobId"] = referents["jobId"]
    path = "/api/v0" + case.path.format(**parameters)
    query = in_order(case.query or {})
    if case.method.upper() == "GET":
        return caller.client.get(path, query, headers={"Authorization": caller.authorization})
    body = case.body if isinstance(case.body, dict) else None
    if case.path == "/job" and body is not None:
        body = named_for_real(body, referents)
    return caller.request(case.method.upper(), path, body)


# Strings without NUL: the portal stores no NUL character in any text (docs/api.md).
dcp_rest = schemathesis.openapi.from_path(SPEC)
dcp_rest.config.generation.update(modes=[GenerationMode.POSITIVE], allow_x00=False)
# Refusals that say nothing about shape: too few credits, or a job already cancelled.
NOT_SHAPE = {(402, "ENOFUNDS"), (409, "ECLOSED")}


GENERATED = settings(
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)


def check_not_refused(caller: Caller, case: Any, referents: dict[str, Any]) -> None:
    response = send(caller, case, referents)
    if response.status_code >= 300:
        refusal = error_of(response)
        assert (response.status_code, refusal["code"]) in NOT_SHAPE, (case.body, refusal)


# Deploy bodies have the most to get wrong: they get the most examples.
@dcp_rest.include(operation_id="deployJob").parametrize()
@settings(GENERATED, max_examples=100)
def test_no_deploy_dcp_rest_takes_is_refused_as_malformed(case, bearer, referents):
    check_not_refused(bearer, case, referents)


@dcp_rest.exclude(operation_id="deployJob").parametrize()
@settings(GENERATED, max_examples=10)
def test_no_other_request_dcp_rest_takes_is_refused_as_malformed(case, bearer, referents):
    check_not_refused(bearer, case, referents)
