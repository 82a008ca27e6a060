"""worker_static/protocol.js and the Python protocol package agree: the generated constants are
current, and the browser's credit arithmetic gives what dcp/protocol/credits.py gives."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from dcp.protocol import javascript
from dcp.protocol.credits import CREDIT_DECIMALS, UNITS_PER_CREDIT, format_credits, to_units

REPO = Path(__file__).resolve().parents[2]
PROTOCOL_JS = REPO / "worker_static" / "protocol.js"
CONSTANTS_JS = REPO / javascript.OUTPUT_PATH
LARGEST_UNITS = 10**18  # a billion credits: the most the ledger holds

needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")

# Reads {amounts, units, sums} on stdin (units as text: JSON numbers lose digits past 2**53)
# and answers what protocol.js makes of each (BigInts as text, refusals as null).
NODE_SCRIPT = """
import { readFileSync } from "node:fs";
const protocol = await import(process.argv[1]);
const input = JSON.parse(readFileSync(0, "utf8"));
const attempt = (compute) => { try { return compute(); } catch { return null; } };
process.stdout.write(JSON.stringify({
  parsed: input.amounts.map((amount) => attempt(() => protocol.parseCredits(amount).toString())),
  formatted: input.units.map((units) => protocol.formatCredits(BigInt(units))),
  sums: input.sums.map((amounts) => attempt(() => protocol.addCredits(...amounts))),
}));
"""


def test_the_committed_constants_are_what_the_python_protocol_renders() -> None:
    assert CONSTANTS_JS.read_text() == javascript.render(), (
        f"{javascript.OUTPUT_PATH} is out of date: run "
        f"`python -m dcp.protocol.javascript > {javascript.OUTPUT_PATH}`"
    )


def test_every_message_type_of_both_sockets_has_a_javascript_name() -> None:
    rendered = javascript.render()

    for name, _, adapter in javascript.MESSAGE_SETS:
        for kind in javascript.message_types(adapter):
            assert f'  {kind.upper()}: "{kind}",' in rendered, (name, kind)


def sample_units(rng: random.Random) -> list[int]:
    edges = [0, 1, -1, 9, 10, UNITS_PER_CREDIT - 1, UNITS_PER_CREDIT, UNITS_PER_CREDIT + 1]
    edges += [LARGEST_UNITS, -LARGEST_UNITS, 5 * 10**8, 123_456_789_012_123_456]
    scales = [10**digits for digits in range(1, 19)]
    drawn = [rng.randrange(-scale, scale + 1) for scale in scales for _ in range(15)]
    return edges + drawn


def other_spellings(amount: str, rng: random.Random) -> list[str]:
    """The same amount written as a person or a scheduler might: padded, signed, spaced."""
    whole, _, fraction = amount.partition(".")
    padded = f"{whole}.{fraction.ljust(CREDIT_DECIMALS, '0')}"
    spellings = [padded, f" {amount} "]
    if not amount.startswith("-"):
        spellings.append(f"+{amount}")
    if whole in ("0", "-0") and fraction:
        spellings.append(f"{whole.removesuffix('0')}.{fraction}")
    return rng.sample(spellings, 2)


def run_protocol_js(payload: dict[str, Any]) -> dict[str, Any]:
    completed = subprocess.run(
        ["node", "--input-type=module", "-e", NODE_SCRIPT, PROTOCOL_JS.as_uri()],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(completed.stdout)


@needs_node
def test_the_browser_counts_credits_exactly_as_the_python_protocol() -> None:
    rng = random.Random(9)
    units = sample_units(rng)
    amounts = [format_credits(value) for value in units]
    amounts += [spelling for amount in amounts for spelling in other_spellings(amount, rng)]
    too_precise = ["0.0000000001", "1.1234567891", "-0.0000000005"]
    sums = [
        [format_credits(rng.choice(units)) for _ in range(rng.randint(1, 5))] for _ in range(100)
    ]

    payload = {
        "amounts": amounts + too_precise,
        "units": [str(value) for value in units],
        "sums": sums,
    }
    answer = run_protocol_js(payload)

    assert answer["formatted"] == [format_credits(value) for value in units]
    assert answer["parsed"] == [str(to_units(amount)) for amount in amounts] + [None] * 3
    assert answer["sums"] == [format_credits(sum(map(to_units, amounts))) for amounts in sums]
