"""frontend/static/portal/chart.js under node: the arithmetic of the portal's charts (scales,
ticks, labels, the summary a screen reader hears, where bars and lines go), without a DOM."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

CHART_JS = Path(__file__).resolve().parents[2] / "frontend" / "static" / "portal" / "chart.js"

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")

# Reads [[function name, ...arguments], ...] on stdin and answers what each call returned.
NODE_SCRIPT = """
import { readFileSync } from "node:fs";
const chart = await import(process.argv[1]);
const calls = JSON.parse(readFileSync(0, "utf8"));
process.stdout.write(JSON.stringify(calls.map(([name, ...args]) => chart[name](...args))));
"""

HOUR = 3_600_000
DAY = 24 * HOUR


def call(*calls: list[Any]) -> list[Any]:
    completed = subprocess.run(
        ["node", "--input-type=module", "-e", NODE_SCRIPT, CHART_JS.as_uri()],
        input=json.dumps(calls),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(completed.stdout)


def ms(*parts: int) -> int:
    return int(datetime(*parts, tzinfo=UTC).timestamp() * 1000)


def test_value_axes_end_on_a_nice_number_above_the_peak():
    assert call(
        ["valueTicks", 19.9],
        ["valueTicks", 0.43],
        ["valueTicks", 1990],
        ["valueTicks", 3],
        ["niceStep", 2.2],
    ) == [
        [0, 5, 10, 15, 20],
        [0, 0.2, 0.4, 0.6],
        [0, 500, 1000, 1500, 2000],
        [0, 1, 2, 3],
        2.5,
    ]


def test_time_axes_tick_on_whole_utc_hours_and_days():
    start, end = ms(2024, 3, 8, 7), ms(2024, 3, 9, 7)
    hours, days = call(["timeTicks", start, end], ["timeTicks", ms(2024, 2, 9), ms(2024, 3, 10)])

    assert hours["step"] == 6 * HOUR
    assert hours["ticks"] == [ms(2024, 3, 8, h) for h in (12, 18)] + [
        ms(2024, 3, 9, 0),
        ms(2024, 3, 9, 6),
    ]
    assert days["step"] == 7 * DAY
    assert all(tick % days["step"] == 0 for tick in days["ticks"])


def test_time_labels_read_as_clock_or_date_in_utc():
    assert call(
        ["timeLabel", ms(2024, 3, 9, 14, 5), 5 * 60_000],
        ["timeLabel", ms(2024, 3, 9, 14, 5, 30), 10_000],
        ["timeLabel", ms(2024, 3, 9), 6 * HOUR],
        ["timeLabel", ms(2024, 3, 9), 7 * DAY],
        ["moment", ms(2024, 3, 9, 14, 5)],
    ) == ["14:05", "14:05:30", "9 Mar", "9 Mar", "9 Mar 14:05 UTC"]


def test_numbers_are_short_on_axes():
    assert call(
        ["formatNumber", 0.25], ["formatNumber", 1250], ["formatNumber", 12345], ["formatNumber", 0]
    ) == ["0.25", "1,250", "12.3K", "0"]


def test_the_summary_gives_each_series_total_peak_and_latest():
    start = ms(2024, 3, 9, 12)
    series = [
        {
            "label": "credits",
            "points": [[start, 0.5], [start + HOUR, 2], [start + 2 * HOUR, 1]],
            "total": "3.5 credits",
        }
    ]
    options = {"title": "Credits earned per hour", "series": series, "start": start}
    [text] = call(["summary", {**options, "end": start + 3 * HOUR}])

    assert text == (
        "Credits earned per hour, from 9 Mar 12:00 UTC to 9 Mar 15:00 UTC. credits: "
        "total 3.5 credits, peak 2 at 9 Mar 13:00 UTC, latest 1."
    )


def test_an_empty_chart_says_so_and_draws_only_its_baseline():
    start = ms(2024, 3, 9, 12)
    options = {
        "title": "Results per second",
        "series": [{"label": "results", "points": [[start, 0], [start + HOUR, 0]]}],
        "start": start,
        "end": start + 2 * HOUR,
        "empty": "No results paid yet.",
    }
    text, drawn = call(["summary", options], ["layout", options])

    assert text.endswith(": No results paid yet.")
    assert [tick["label"] for tick in drawn["yTicks"]] == ["0"]
    assert drawn["marks"] == []


def test_bars_stand_on_the_baseline_as_tall_as_their_values():
    start = ms(2024, 3, 9, 12)
    options = {
        "series": [
            {"label": "slices", "points": [[start, 10], [start + HOUR, 5], [start + 2 * HOUR, 0]]}
        ],
        "start": start,
        "end": start + 3 * HOUR,
        "bars": True,
        "barWidth": HOUR,
    }
    [drawn] = call(["layout", options])

    plot = drawn["plot"]
    [rects] = [mark["rects"] for mark in drawn["marks"]]
    assert [round(r["y"] + r["height"], 1) for r in rects] == [plot["y0"]] * 3
    assert rects[0]["height"] == pytest.approx(2 * rects[1]["height"], abs=0.2)
    assert rects[2]["height"] == 0
    assert rects[0]["x"] == pytest.approx(plot["x0"], abs=1)
    assert rects[2]["x"] + rects[2]["width"] == pytest.approx(plot["x1"], abs=1.5)


def test_a_line_runs_from_its_first_point_to_its_last_inside_the_plot():
    start = ms(2024, 3, 9, 12)
    options = {
        "series": [{"label": "credits", "points": [[start, 0], [start + HOUR, 4]]}],
        "start": start,
        "end": start + HOUR,
    }
    [drawn] = call(["layout", options])

    plot = drawn["plot"]
    [mark] = drawn["marks"]
    assert mark["dots"] == [[plot["x0"], plot["y0"]], [plot["x1"], plot["y1"]]]
    assert mark["line"] == f"M{plot['x0']} {plot['y0']} L{plot['x1']} {plot['y1']}"
    assert mark["area"].endswith("Z")
