"""The README's HTTP API example, run request by request exactly as printed there."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from django.test import Client

from .conftest import compute

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_curls() -> list[str]:
    """The `curl` lines of the sh block in the README's "HTTP API" section."""
    section = README.read_text().split("## HTTP API", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL).group(1)
    return [line for line in block.splitlines() if line.startswith("curl ")]


def run_curl(client: Client, line: str, env: dict[str, str]):
    """Send what `curl` would send for this command line, through the test client."""
    for name, value in env.items():
        line = line.replace(f"${name}", value)
    words = shlex.split(line)
    assert words[0] == "curl"
    method, headers, data, url = "GET", {}, None, None
    words = iter(words[1:])
    for word in words:
        if word == "-s":
            continue
        if word == "-X":
            method = next(words)
        elif word == "-H":
            name, _, value = next(words).partition(": ")
            headers[name] = value
        elif word == "-d":
            data = next(words)
            method = "POST" if method == "GET" else method
        else:
            url = word
    path = url.removeprefix("http://127.0.0.1:8000")
    content_type = headers.pop("Content-Type", "application/octet-stream")
    return client.generic(method, path, data or "", content_type=content_type, headers=headers)


def test_the_readme_curl_example_works_as_printed(api_token, volunteer):
    deploy, close, results = readme_curls()
    client, env = Client(), {"DCP_API_KEY": api_token}
    response = run_curl(client, deploy, env)
    assert response.status_code == 201
    env["JOB"] = response.json()["jobId"]
    assert run_curl(client, close, env).status_code == 200
    compute(env["JOB"], volunteer)  # a Worker tab computes the three slices
    body = json.loads(run_curl(client, results, env).content)
    assert body["results"] == [
        {"sliceNumber": 1, "value": 2},
        {"sliceNumber": 2, "value": 4},
        {"sliceNumber": 3, "value": 6},
    ]
    assert body["totalSlices"] == body["completedSlices"] == 3
    status = client.get(
        f"/api/v0/job/{env['JOB']}/status", headers={"Authorization": f"Bearer {api_token}"}
    ).json()
    assert status["status"] == "finished"
