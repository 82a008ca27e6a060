"""Who may embed a worker (WORKER_EMBED_ORIGINS): the headers of the embedded worker's frame and of
the sandboxes' frame, the access answer dcp-worker.js asks for, and the example page."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from portal.wallet.models import Key, KeyKind

PORTAL = "http://testserver"
SHOP = "https://shop.example"


def frame_ancestors(response) -> str:
    found = re.search(r"frame-ancestors [^;]*", response["Content-Security-Policy"])
    assert found, response["Content-Security-Policy"]
    return found.group(0)


def embedders_named_in(response) -> str:
    meta = r'<meta name="dcp-embed-origins" content="([^"]*)">'
    found = re.search(meta, response.content.decode())
    assert found
    return found.group(1)


def access(client, origin: str) -> dict:
    response = client.get("/worker/embed.json", {"origin": origin})
    assert response["Access-Control-Allow-Origin"] == "*"
    return response.json()


def test_by_default_only_the_portals_own_pages_may_frame_the_worker(client):
    frame = client.get("/worker/embed.html")
    assert frame.status_code == 200
    assert frame_ancestors(frame) == "frame-ancestors 'self'"
    assert embedders_named_in(frame) == PORTAL
    assert "X-Frame-Options" not in frame  # frame-ancestors says who may
    sandboxes = client.get("/worker/sandbox-host.html")
    assert frame_ancestors(sandboxes) == "frame-ancestors 'self'"
    assert sandboxes["X-Frame-Options"] == "SAMEORIGIN"


def test_listed_origins_may_frame_the_worker_and_its_sandboxes(client, settings):
    settings.WORKER_EMBED_ORIGINS = [f"{SHOP}:443/", "HTTP://Blog.Example:8080"]
    listed = f"{SHOP} http://blog.example:8080"
    frame = client.get("/worker/embed.html")
    assert frame_ancestors(frame) == f"frame-ancestors 'self' {listed}"
    assert embedders_named_in(frame) == f"{PORTAL} {listed}"
    sandboxes = client.get("/worker/sandbox-host.html")
    assert frame_ancestors(sandboxes) == f"frame-ancestors 'self' {listed}"
    assert "X-Frame-Options" not in sandboxes


def test_the_worker_frame_loads_only_the_portals_worker(client):
    policy = client.get("/worker/embed.html")["Content-Security-Policy"]
    assert "default-src 'none'" in policy
    assert f"script-src {PORTAL}/worker/;" in policy
    connect = "ws://testserver/ws/worker/ http://testserver/store/ http://testserver/worker/vendor/pyodide/"
    assert f"connect-src {connect};" in policy
    assert f"frame-src {PORTAL}/worker/sandbox-host.html;" in policy


def test_a_cross_origin_isolated_page_may_frame_the_worker(client):
    frame = client.get("/worker/embed.html")
    assert frame["Cross-Origin-Resource-Policy"] == "cross-origin"
    assert frame["Cross-Origin-Embedder-Policy"] == "require-corp"
    script = client.get("/dcp-client/dcp-worker.js")
    assert script["Content-Type"].startswith("text/javascript")
    assert script["Cross-Origin-Resource-Policy"] == "cross-origin"
    assert b"dcp.worker" in script.content


def test_the_access_answer_says_which_origins_may_embed(client, settings):
    assert access(client, SHOP)["embeddable"] is False
    assert access(client, PORTAL)["embeddable"] is True
    settings.WORKER_EMBED_ORIGINS = [SHOP]
    assert access(client, SHOP)["embeddable"] is True
    assert access(client, "https://stranger.example")["embeddable"] is False
    settings.WORKER_EMBED_ORIGINS = ["*"]
    assert access(client, "https://stranger.example")["embeddable"] is True
    assert frame_ancestors(client.get("/worker/embed.html")) == "frame-ancestors 'self' *"


def test_the_access_answer_says_a_token_is_needed_unless_anonymous_workers_may_work(
    client, settings, user
):
    settings.WORKER_EMBED_ORIGINS = [SHOP]
    assert access(client, SHOP)["tokenNeeded"] is True
    settings.ALLOW_ANONYMOUS_WORKERS = True
    assert access(client, SHOP)["tokenNeeded"] is False
    settings.ALLOW_ANONYMOUS_WORKERS = False
    client.force_login(user)  # the portal's own pages: the session is the credential
    assert access(client, PORTAL)["tokenNeeded"] is False


def test_an_entry_that_is_not_an_origin_is_a_configuration_error(client, settings):
    settings.WORKER_EMBED_ORIGINS = ["shop.example; script-src *"]
    with pytest.raises(ImproperlyConfigured, match="not an origin"):
        client.get("/worker/embed.html")


def test_the_example_page_names_the_portal_in_full_for_other_sites(client, db):
    html = client.get("/examples/embedded-worker/").content.decode()
    assert f'<script src="{PORTAL}/dcp-client/dcp-worker.js"></script>' in html
    assert 'name="paymentAddress" value=""' in html


def test_the_example_page_pays_the_signed_in_users_default_account(client, user):
    client.force_login(user)
    html = client.get("/examples/embedded-worker/").content.decode()
    address = Key.objects.get(user=user, kind=KeyKind.ACCOUNT, is_default=True).address
    assert f'name="paymentAddress" value="{address}"' in html


def test_a_malformed_embed_origin_fails_the_portals_start_up_checks(
    settings: Any, db: None
) -> None:
    from django.core import checks

    settings.WORKER_EMBED_ORIGINS = ["shop.example/path"]
    found = checks.run_checks(app_configs=None, tags=None)
    assert [(error.id, "'shop.example/path' is not an origin" in error.msg) for error in found] == [
        ("web.E001", True)
    ]
