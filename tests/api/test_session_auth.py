"""The portal's own pages call the API with the signed-in session and its CSRF token; pages on
other origins call it with an API key, through CORS. Also the client script and its example page.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.test import Client

from portal.bank.selectors import balance_of
from portal.scheduler.models import Job
from portal.wallet.models import Key, KeyKind
from portal.wallet.services import create_key

from .conftest import Caller, error_of

WORK = {"language": "js", "function": "function (x) { return x.toUpperCase() }"}
EVIL = "https://evil.example"


@pytest.fixture
def session(first_dev: Any, identity: Key) -> Client:
    """A browser signed in to the portal, holding the csrftoken cookie a portal page set."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(first_dev)
    assert client.get("/examples/uppercase/").status_code == 200
    return client


def csrf_headers(client: Client, **extra: str) -> dict[str, str]:
    return {"X-CSRFToken": client.cookies["csrftoken"].value, **extra}


def deploy(client: Client, body: dict[str, Any], **headers: str) -> Any:
    return client.post(
        "/api/v0/job", data=json.dumps(body), content_type="application/json", headers=headers
    )


# --- the session, with its CSRF token ------------------------------------------------------


def test_a_session_with_its_csrf_token_reads_the_accounts(session, account):
    response = session.get("/api/v0/accounts", headers=csrf_headers(session))
    assert response.status_code == 200
    assert [row["address"] for row in response.json()] == [account.address]
    assert "Access-Control-Allow-Origin" not in response


def test_a_session_with_its_csrf_token_deploys_as_the_first_identity_from_the_chosen_account(
    session, first_dev, identity, account
):
    create_key(user=first_dev, kind=KeyKind.IDENTITY, label="later")
    second = create_key(user=first_dev, kind=KeyKind.ACCOUNT, label="savings")
    body = {
        "slices": ["a", "b"],
        "work": WORK,
        "slicePaymentOffer": "0.5",
        "account": {"address": account.address},
    }
    response = deploy(session, body, **csrf_headers(session, Origin="http://testserver"))
    assert response.status_code == 201
    job = Job.objects.get(pk=response.json()["jobId"])
    assert (job.identity, job.payer, job.owner) == (identity.address, account.address, first_dev)
    assert balance_of(account.address) == 9 * 10**9
    assert balance_of(second.address) == 0
    for action in ("close", "status"):
        method = session.post if action == "close" else session.get
        answer = method(f"/api/v0/job/{job.id}/{action}", headers=csrf_headers(session))
        assert answer.status_code == 200, answer.content


def test_without_the_csrf_token_a_session_is_refused_and_nothing_is_deployed(session, account):
    assert error_of(session.get("/api/v0/accounts"))["code"] == "ECSRF"
    response = deploy(session, {"slices": [1], "work": WORK, "slicePaymentOffer": 1})
    assert response.status_code == 403
    assert error_of(response)["code"] == "ECSRF"
    assert "X-CSRFToken" in error_of(response)["message"]
    assert Job.objects.count() == 0
    assert balance_of(account.address) == 10 * 10**9


def test_a_wrong_csrf_token_is_refused(session):
    response = session.get("/api/v0/accounts", headers={"X-CSRFToken": "x" * 32})
    assert response.status_code == 403
    assert error_of(response)["code"] == "ECSRF"


def test_a_cross_site_request_is_refused_even_with_the_token(session):
    response = deploy(session, {"slices": [1], "work": WORK}, **csrf_headers(session, Origin=EVIL))
    assert response.status_code == 403
    assert Job.objects.count() == 0


def test_a_session_cannot_pay_from_someone_elses_account(session, stranger):
    theirs = Key.objects.get(user__email="eve@example.com", kind=KeyKind.ACCOUNT)
    body = {"slices": [1], "work": WORK, "account": {"address": theirs.address}}
    response = deploy(session, body, **csrf_headers(session))
    assert response.status_code == 403
    assert error_of(response)["code"] == "EACCOUNT"


def test_a_session_without_an_identity_key_is_told_to_make_one(first_dev):
    client = Client(enforce_csrf_checks=True)
    client.force_login(first_dev)
    client.get("/examples/uppercase/")
    response = client.get("/api/v0/accounts", headers=csrf_headers(client))
    assert response.status_code == 403
    assert error_of(response) == {
        "code": "ENOIDENTITY",
        "message": "create an identity key on the First Devs tab",
    }


def test_without_a_session_the_api_still_asks_for_credentials(db):
    client = Client(enforce_csrf_checks=True)
    response = client.get("/api/v0/accounts", headers={"X-CSRFToken": "x" * 32})
    assert response.status_code == 401
    assert error_of(response)["code"] == "EAUTH"


def test_api_keys_still_work_beside_a_session_and_need_no_token(session, api_token):
    response = session.get("/api/v0/jobs", headers={"Authorization": f"Bearer {api_token}"})
    assert response.status_code == 200
    bad = session.get("/api/v0/jobs", headers={"Authorization": "Bearer dcp_nonsense"})
    assert bad.status_code == 401


def test_the_openapi_schema_offers_programs_only_bearer_and_basic(db):
    schemes = Client().get("/api/v0/openapi.json").json()["components"]["securitySchemes"]
    assert {scheme["scheme"] for scheme in schemes.values()} == {"bearer", "basic"}


# --- CORS, for API keys only ---------------------------------------------------------------


def test_a_cors_preflight_is_answered_204_without_credentials(db):
    response = Client().options(
        "/api/v0/job",
        headers={
            "Origin": EVIL,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
        },
    )
    assert response.status_code == 204
    assert response["Access-Control-Allow-Origin"] == "*"
    allowed = {name.strip().lower() for name in response["Access-Control-Allow-Headers"].split(",")}
    assert allowed == {"authorization", "content-type", "idempotency-key"}
    assert "POST" in response["Access-Control-Allow-Methods"]
    assert "Access-Control-Allow-Credentials" not in response


def test_a_preflight_of_a_job_path_is_answered_too(db):
    headers = {"Origin": EVIL, "Access-Control-Request-Method": "DELETE"}
    response = Client().options("/api/v0/job/" + "a" * 32, headers=headers)
    assert response.status_code == 204


def test_an_options_request_that_is_no_preflight_is_still_405(db):
    response = Client().options("/api/v0/job")
    assert response.status_code == 405
    assert error_of(response)["code"] == "EMETHOD"


def test_answers_to_bearer_requests_may_be_read_by_any_origin(bearer, db):
    assert bearer.get("/api/v0/jobs", Origin=EVIL)["Access-Control-Allow-Origin"] == "*"
    refused = Caller(Client(), "Bearer dcp_nonsense").get("/api/v0/jobs", Origin=EVIL)
    assert refused.status_code == 401
    assert refused["Access-Control-Allow-Origin"] == "*"  # so the page can read why


def test_answers_to_session_and_basic_requests_carry_no_cors_header(session, basic):
    answers = [
        session.get("/api/v0/accounts", headers=csrf_headers(session, Origin=EVIL)),
        basic.get("/api/v0/jobs", Origin=EVIL),
        Client().get("/api/v0/jobs", headers={"Origin": EVIL}),
    ]
    for response in answers:
        assert "Access-Control-Allow-Origin" not in response


# --- the client script and its example page -------------------------------------------------


def test_the_client_script_is_served_as_javascript_to_any_origin(db):
    response = Client().get("/dcp-client/dcp-client.js")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/javascript")
    assert response["Cross-Origin-Resource-Policy"] == "cross-origin"
    source = response.content.decode()
    assert "window.dcp" in source and "Which account pays?" in source
    assert not re.search(r"^\s*(import|export)\b", source, re.MULTILINE)  # a classic script


def test_the_uppercase_example_needs_a_signed_in_user(db):
    response = Client().get("/examples/uppercase/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_the_uppercase_example_loads_the_client_and_sets_the_csrf_cookie(first_dev):
    client = Client()
    client.force_login(first_dev)
    response = client.get("/examples/uppercase/")
    html = response.content.decode()
    assert '<script src="/dcp-client/dcp-client.js"></script>' in html
    assert "Letters" in html and 'value="abcdef"' in html and "Distribute" in html
    assert "Ready state" in html and "Results" in html
    assert "csrftoken" in response.cookies
