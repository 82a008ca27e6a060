"""worker_static/batching.js under node: which results go in which `result` frame.

The scheduler closes a socket on a frame over MAX_FRAME_BYTES, and the slices in flight on it
go back to the queue: a result too big for a frame of its own must become the slice's error, and
results that fit one by one but not together must go in several frames.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from dcp.protocol.limits import MAX_FRAME_BYTES

BATCHING_JS = Path(__file__).resolve().parents[2] / "worker_static" / "batching.js"
MIB = 2**20

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")

# Reads [[slice, text], ...] on stdin, batches them as results of one job, flushes, and answers
# every frame the Outbox sent: its size in UTF-8 bytes and its entries (values as their lengths).
NODE_SCRIPT = """
import { readFileSync } from "node:fs";
const { Outbox } = await import(process.argv[1]);
const frames = [];
let ids = 0;
const connection = {
  isOpen: true,
  requestId: () => (ids += 1),
  send: () => true,
  sendAwaitingAck: (id, text) => frames.push(text),
};
const outbox = new Outbox({ connection, log: () => {} });
for (const [slice, text] of JSON.parse(readFileSync(0, "utf8"))) {
  outbox.addResult("job-1", { slice, value: text, ms: 1 });
}
outbox.flush("job-1");
process.stdout.write(JSON.stringify(frames.map((text) => {
  const frame = JSON.parse(text);
  return {
    bytes: Buffer.byteLength(text),
    results: frame.results.map(({ slice, value }) => [slice, value.length]),
    errors: frame.errors,
  };
})));
"""


def frames_sent(results: list[tuple[int, str]]) -> list[dict[str, Any]]:
    completed = subprocess.run(
        ["node", "--input-type=module", "-e", NODE_SCRIPT, BATCHING_JS.as_uri()],
        input=json.dumps(results),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(completed.stdout)


def test_results_too_big_for_a_frame_become_errors_and_the_rest_are_split_to_fit() -> None:
    frames = frames_sent(
        [
            (1, "r" * (3 * MIB // 2)),
            (2, "r" * int(5.2 * MIB)),
            (3, "r" * (3 * MIB // 2)),
            (4, "é" * (5 * 10**6 // 2)),  # 2.5 million characters, 5 million bytes
            (5, "r" * (3 * MIB // 2)),
            (6, "small"),
        ]
    )

    # Every result that fits arrived, once, and no frame is over the limit: 4.5 MiB of them
    # went in several frames.
    assert all(frame["bytes"] <= MAX_FRAME_BYTES for frame in frames), frames
    results = [entry for frame in frames for entry in frame["results"]]
    assert sorted(results) == [[1, 3 * MIB // 2], [3, 3 * MIB // 2], [5, 3 * MIB // 2], [6, 5]]
    errors = {error["slice"]: error for frame in frames for error in frame["errors"]}
    assert errors == {
        2: {
            "slice": 2,
            "name": "ResultTooLarge",
            "message": "the result of slice 2 is 5.2 MiB of JSON; a slice result must fit in "
            "one 4 MiB message (3.94 MiB of JSON)",
            "traceback": "",
        },
        4: {
            "slice": 4,
            "name": "ResultTooLarge",
            "message": "the result of slice 4 is 4.77 MiB of JSON; a slice result must fit in "
            "one 4 MiB message (3.94 MiB of JSON)",
            "traceback": "",
        },
    }


# Adds results with the given `gpuMs` (null: none) and answers the result entries it sent.
GPU_SCRIPT = """
const { Outbox } = await import(process.argv[1]);
const frames = [];
const connection = {
  isOpen: true,
  requestId: () => 1,
  send: () => true,
  sendAwaitingAck: (id, text) => frames.push(JSON.parse(text)),
};
const outbox = new Outbox({ connection, log: () => {} });
const claims = [12.5, 0, null, -3, Infinity, "7"];
claims.forEach((gpuMs, i) => {
  const entry = { slice: i + 1, value: i, ms: 4 };
  if (gpuMs !== null) entry.gpuMs = gpuMs;
  outbox.addResult("job-1", entry);
});
outbox.flush("job-1");
process.stdout.write(JSON.stringify(frames.flatMap((frame) => frame.results)));
"""


def test_a_sandboxs_gpu_time_goes_out_as_gpu_ms_when_it_is_a_number_the_scheduler_takes() -> None:
    completed = subprocess.run(
        ["node", "--input-type=module", "-e", GPU_SCRIPT, BATCHING_JS.as_uri()],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(completed.stdout) == [
        {"slice": 1, "value": 0, "ms": 4, "gpu_ms": 12.5},
        {"slice": 2, "value": 1, "ms": 4, "gpu_ms": 0},
        {"slice": 3, "value": 2, "ms": 4},
        {"slice": 4, "value": 3, "ms": 4},  # negative: the scheduler would refuse the frame
        {"slice": 5, "value": 4, "ms": 4},
        {"slice": 6, "value": 5, "ms": 4},
    ]
