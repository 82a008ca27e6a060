"""worker_static/pacing.js under node: how many cores a worker uses and how long they rest.

Each test tells a Pacing what happens (slices of jobs and how long they ran, the battery, idle
time) and reads back what it answers after each event. Time is counted, never waited for.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

PACING_JS = Path(__file__).resolve().parents[2] / "worker_static" / "pacing.js"

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")

# Reads {options, events} on stdin, replays the events on one Pacing with a clock of its own,
# and answers its state after each event, with how long a core would rest after a 1 s slice.
NODE_SCRIPT = """
import { readFileSync } from "node:fs";
const { Pacing } = await import(process.argv[1]);
const { options, events } = JSON.parse(readFileSync(0, "utf8"));
const pacing = new Pacing(options);
let now = 0;
const happen = {
  slice: (job, ms) => { now += ms; pacing.noteSlice({ job, ms, now }); },
  battery: (onBattery) => pacing.setOnBattery(onBattery),
  idle: (ms) => {
    pacing.noteTime({ now, idle: true });
    now += ms;
    pacing.noteTime({ now, idle: true });
  },
  dutyCycle: (fraction) => pacing.setDutyCycle(fraction),
};
const answers = events.map(([kind, ...args]) => {
  try {
    happen[kind](...args);
  } catch (error) {
    return { error: `${error.name}: ${error.message}` };
  }
  return { ...pacing.state, restAfter1s: pacing.restMs(1000) };
});
process.stdout.write(JSON.stringify(answers));
"""

BUSY = (
    "holding back: slices run {}\N{MULTIPLICATION SIGN} slower than their recent pace"
    " (the machine is busy)"
)

Event = tuple[Any, ...]


def replay(events: list[Event], **options: Any) -> list[dict[str, Any]]:
    completed = subprocess.run(
        ["node", "--input-type=module", "-e", NODE_SCRIPT, PACING_JS.as_uri()],
        input=json.dumps({"options": options, "events": events}),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    answers: list[dict[str, Any]] = json.loads(completed.stdout)
    return answers


def slices(job: str, *durations: float) -> list[Event]:
    return [("slice", job, ms) for ms in durations]


def test_a_core_rests_in_proportion_to_its_slices_and_bad_duty_cycles_are_refused() -> None:
    durations = [120, 800, 35, 2_000, 410]
    events: list[Event] = [
        *slices("a", *durations),
        ("dutyCycle", 0.25),
        ("dutyCycle", 0.05),
        ("dutyCycle", 1.5),
        ("dutyCycle", "0.5"),
        ("dutyCycle", None),
        ("dutyCycle", 1),
    ]

    answers = replay(events, cores=2, dutyCycle=0.5)

    # At duty cycle 0.5 a core rests as long as its slice ran: busy half the time, counted.
    rest_ms = answers[0]["restAfter1s"] / 1000
    busy = sum(durations)
    assert busy / (busy + rest_ms * busy) == 0.5
    assert answers[0] == {
        "dutyCycle": 0.5,
        "activeDutyCycle": 0.5,
        "cores": 2,
        "activeCores": 2,
        "holdingBack": False,
        "reason": "",
        "restAfter1s": 1000,
    }
    assert answers[5]["restAfter1s"] == 3000  # 0.25: three times as long as it ran
    refusal = (
        "TypeError: dutyCycle is the share of each core's time spent computing, "
        "a number from 0.1 to 1, not "
    )
    assert [answer.get("error") for answer in answers[6:10]] == [
        refusal + "0.05",
        refusal + "1.5",
        refusal + '"0.5"',
        refusal + "null",
    ]
    assert answers[10]["dutyCycle"] == 1 and answers[10]["restAfter1s"] == 0


def test_slices_slower_than_their_own_pace_hold_back_step_by_step_and_the_pace_lets_go() -> None:
    events: list[Event] = [
        *slices("a", 100, 100, 110, 90, 100, 100),  # job a's pace: 100 ms
        *slices("b", 1_000, 1_000, 1_000, 1_000, 1_000),  # job b is slower by nature, not slow
        *slices("a", 400, 100),  # one outlier: nothing happens
        *slices("a", 210, 205, 220),  # three slow in a row: one step
        *slices("b", 2_500, 2_500, 2_500),  # b slow against its own pace: a second step
        *slices("a", 100, 100, 100),  # at pace again: one step back
        *slices("a", 95, 105, 100),  # and the second
    ]

    answers = replay(events, cores=4, dutyCycle=1)

    holding = [(a["activeCores"], a["activeDutyCycle"], a["reason"]) for a in answers]
    released = (4, 1, "")
    assert holding[:13] == [released] * 13
    assert holding[15] == (3, 0.75, BUSY.format("2.1"))
    assert holding[18] == (2, 0.5, BUSY.format("2.5"))
    assert holding[21] == (3, 0.75, BUSY.format("2.5"))
    assert holding[24] == released
    assert [a["holdingBack"] for a in answers[13:25]] == [False] * 2 + [True] * 9 + [False]
    assert answers[18]["restAfter1s"] == 1000  # duty cycle 0.5 in force: rest as long as work


def test_a_busy_machine_never_leaves_less_than_one_core_and_an_idle_worker_lets_go() -> None:
    events: list[Event] = [
        *slices("a", 50, 50, 50, 50, 50),
        *slices("a", *[200] * 15),  # five steps' worth of slow slices: held at the last step
        ("idle", 59_000),
        ("idle", 1_000),
    ]

    answers = replay(events, cores=2, dutyCycle=0.8)

    deepest = answers[19]
    assert (deepest["activeCores"], deepest["activeDutyCycle"]) == (1, 0.2)
    assert deepest["reason"] == BUSY.format("4.0")
    assert answers[20]["holdingBack"] is True  # 59 s idle
    assert answers[21]["holdingBack"] is False  # 60 s: nothing to compare against any more
    assert answers[21]["activeCores"] == 2


def test_on_battery_a_worker_uses_half_its_cores_at_half_the_duty_cycle_at_most() -> None:
    events: list[Event] = [
        ("battery", True),
        *slices("a", 100, 100, 100, 100, 100, 300, 300, 300),
        ("battery", False),
    ]

    answers = replay(events, cores=5, dutyCycle=0.6)

    assert answers[0] == {
        "dutyCycle": 0.6,
        "activeDutyCycle": 0.5,
        "cores": 5,
        "activeCores": 2,
        "holdingBack": True,
        "reason": "holding back: on battery",
        "restAfter1s": 1000,
    }
    assert answers[8]["reason"] == "holding back: on battery, and " + BUSY.format(
        "3.0"
    ).removeprefix("holding back: ")
    assert (answers[8]["activeCores"], answers[8]["activeDutyCycle"]) == (2, 0.45)
    assert answers[9]["reason"] == BUSY.format("3.0")
    assert (answers[9]["activeCores"], answers[9]["activeDutyCycle"]) == (4, 0.45)
    single = replay([("battery", True)], cores=1)
    assert (single[0]["activeCores"], single[0]["activeDutyCycle"]) == (1, 0.5)
