"""Requests whose head is over the server's limit, sent over real sockets to a live daphne:
each gets a clear 4xx reply (never a dropped connection) and the log gets one line."""

from __future__ import annotations

import http.client
import socket
import uuid

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from testkit.livesite import LiveSite

KIB = 1024


def marker() -> str:
    """A path no other request uses, to find this request's line in the server's log."""
    return f"/limits-{uuid.uuid4().hex}"


def request(
    site: LiveSite, path: str, headers: dict[str, str] | None = None
) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", site.port, timeout=10)
    connection.request("GET", path, headers=headers or {})
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def refused(site: LiveSite, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """The status and body of a request the server refuses, checking it closes the connection."""
    connection = http.client.HTTPConnection("127.0.0.1", site.port, timeout=10)
    connection.request("GET", path, headers=headers or {})
    response = connection.getresponse()
    body = response.read().decode()
    assert response.getheader("Connection") == "close"
    assert response.getheader("Content-Type") == "text/plain; charset=utf-8"
    connection.close()
    return response.status, body


def log_lines_about(site: LiveSite, path: str) -> list[str]:
    return [line for line in site.log_path.read_text().splitlines() if path in line]


def test_a_url_over_16_kib_is_answered_414_and_logged_once(portal_site: LiveSite) -> None:
    path = marker()
    status, body = refused(portal_site, path + "a" * 20 * KIB)
    assert status == 414
    assert body == "414 URI Too Long: request line (method, URL, version) over 16384 bytes.\n"
    [line] = log_lines_about(portal_site, path)
    assert line.startswith("414 URI Too Long from 127.0.0.1:")


def test_a_header_over_16_kib_is_answered_431_and_logged_once(portal_site: LiveSite) -> None:
    path = marker()
    status, body = refused(portal_site, path, {"X-Big": "b" * 20 * KIB})
    assert status == 431
    assert "request line and headers over 16384 bytes together" in body
    [line] = log_lines_about(portal_site, path)
    assert line.startswith("431 Request Header Fields Too Large from 127.0.0.1:")
    assert f"GET {path} HTTP/1.1" in line


def test_headers_over_16_kib_together_are_answered_431(portal_site: LiveSite) -> None:
    path = marker()
    headers = {f"X-Part-{n}": "c" * KIB for n in range(20)}  # each well under the limit
    status, _ = refused(portal_site, path, headers)
    assert status == 431
    assert len(log_lines_about(portal_site, path)) == 1


def test_a_client_still_sending_a_huge_cookie_reads_the_431(portal_site: LiveSite) -> None:
    # The server has answered long before the client has sent it all: it keeps reading what
    # arrives instead of resetting the connection under the client's feet.
    path = marker()
    status, _ = refused(portal_site, path, {"Cookie": "d" * 4 * KIB * KIB})
    assert status == 431


def test_a_websocket_upgrade_with_a_huge_header_is_answered_431(portal_site: LiveSite) -> None:
    url = portal_site.url.replace("http", "ws", 1) + "/ws/worker/"
    with pytest.raises(InvalidStatus) as refusal:
        connect(url, additional_headers={"Origin": portal_site.url, "X-Big": "e" * 20 * KIB})
    assert refusal.value.response.status_code == 431
    assert b"request line and headers over 16384 bytes" in refusal.value.response.body


def test_a_malformed_request_line_is_answered_400_with_a_reason(portal_site: LiveSite) -> None:
    with socket.create_connection(("127.0.0.1", portal_site.port), timeout=10) as raw:
        raw.sendall(b"NONSENSE\r\nHost: 127.0.0.1\r\n\r\n")
        reply = b""
        while chunk := raw.recv(4096):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert body.startswith(b"400 Bad Request: malformed request line or header")


def test_a_head_just_under_the_limit_is_served(portal_site: LiveSite) -> None:
    path = marker()
    long_but_allowed = path + "f" * (15 * KIB)
    assert request(portal_site, long_but_allowed).status == 404  # the application answered
    assert request(portal_site, "/accounts/login/").status == 200


def test_requests_on_one_connection_are_each_measured_on_their_own(
    portal_site: LiveSite,
) -> None:
    # Three 6 KiB heads on one kept-alive connection: 18 KiB together, each under the limit.
    connection = http.client.HTTPConnection("127.0.0.1", portal_site.port, timeout=10)
    for _ in range(3):
        connection.request("GET", "/accounts/login/", headers={"X-Pad": "g" * 6 * KIB})
        response = connection.getresponse()
        response.read()
        assert response.status == 200
    connection.close()
