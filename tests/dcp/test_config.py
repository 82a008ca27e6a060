"""dcp.init(): which scheduler, and its client socket URL."""

from __future__ import annotations

import pytest

import dcp
from dcp.config import client_socket_url, portal_url, scheduler_url

pytestmark: list[pytest.MarkDecorator] = []


def test_the_default_scheduler_is_local():
    assert scheduler_url() == "http://127.0.0.1:8000"
    assert client_socket_url() == "ws://127.0.0.1:8000/ws/client/"


def test_the_environment_names_the_scheduler(monkeypatch):
    monkeypatch.setenv("DCP_SCHEDULER_URL", "https://dcp.example.org")
    assert dcp.init() == "https://dcp.example.org"
    assert client_socket_url() == "wss://dcp.example.org/ws/client/"


def test_init_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv("DCP_SCHEDULER_URL", "https://elsewhere.example.org")
    dcp.init("http://localhost:9000/portal/")
    assert client_socket_url() == "ws://localhost:9000/ws/client/"
    assert portal_url() == "http://localhost:9000"


def test_a_websocket_url_with_a_path_is_used_as_is():
    assert client_socket_url("wss://h.example/custom/") == "wss://h.example/custom/"
    assert client_socket_url("ws://h.example") == "ws://h.example/ws/client/"


def test_a_url_that_is_not_http_is_refused():
    with pytest.raises(dcp.DCPError, match="must look like http"):
        dcp.init("ftp://example.org")
    with pytest.raises(dcp.DCPError, match="must look like http"):
        dcp.init("localhost:8000")
