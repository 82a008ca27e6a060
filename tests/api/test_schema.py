"""The published OpenAPI schema, the docs page built from it, and a schemathesis run against it.

Schemathesis generates requests for every operation from the schema (valid and invalid ones)
and sends them in-process through Django's WSGI handler with a real API key: no response may
be a 5xx, and every documented response must match its schema.
"""

from __future__ import annotations

import re

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.test import Client
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from .conftest import compute

# Loaded at collection, through the WSGI handler: the schema view needs no database.
schema = schemathesis.openapi.from_wsgi("/api/v0/openapi.json", get_wsgi_application())


def test_the_openapi_schema_is_public_and_describes_every_endpoint(db):
    response = Client().get("/api/v0/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert set(document["paths"]) == {
        "/api/v0/job",
        "/api/v0/job/{job_id}",
        "/api/v0/job/{job_id}/slices",
        "/api/v0/job/{job_id}/close",
        "/api/v0/job/{job_id}/escrow",
        "/api/v0/job/{job_id}/result",
        "/api/v0/job/{job_id}/result/{slice_number}",
        "/api/v0/job/{job_id}/status",
        "/api/v0/jobs",
        "/api/v0/jobs/count",
        "/api/v0/accounts",
    }
    schemes = document["components"]["securitySchemes"]
    assert {scheme["scheme"] for scheme in schemes.values()} == {"bearer", "basic"}
    job_in = document["components"]["schemas"]["JobIn"]
    assert job_in["additionalProperties"] is False


def test_the_docs_page_lists_every_operation_and_loads_nothing_from_elsewhere(db):
    response = Client().get("/api/v0/docs")
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count('data-testid="operation"') == 12
    assert "POST /api/v0/job" in html and "JobIn" in html
    assert re.findall(r'(?:src|href)="(https?:)?//', html) == []
    assert "cdn" not in html.lower()


@pytest.fixture
def keep_the_test_connection():
    """Django's WSGI handler closes the database connection around each request, which on
    PostgreSQL would end the test's transaction; Django's own test client stops that the same
    way."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def live_job(bearer, volunteer) -> str:
    """A job of the caller's, open, with some results: generated requests aim at it."""
    work = {"language": "js", "function": "function (x) { return x * 2 }"}
    job_id = bearer.post("/api/v0/job", {"work": work, "slices": [1, 2, 3]}).json()["jobId"]
    compute(job_id, volunteer)
    bearer.post(f"/api/v0/job/{job_id}/slices", {"slices": [4]})
    return job_id


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)
def test_no_generated_request_gets_a_server_error_or_an_off_schema_answer(
    case, api_token, live_job, keep_the_test_connection
):
    if case.path_parameters and "job_id" in case.path_parameters:
        case.path_parameters["job_id"] = live_job
    case.call_and_validate(
        headers={"Authorization": f"Bearer {api_token}"},
        checks=[not_a_server_error, response_schema_conformance],
    )
