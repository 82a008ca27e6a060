"""The forms of ids the protocol carries, checked alike by the scheduler and the `dcp` command
(a light module: `dcp worker --job` checks ids without loading the message schemas)."""

from __future__ import annotations

import re

JOB_ID_FORM = re.compile(r"[0-9a-f]{32}")  # what the scheduler makes: a UUID4's hex digits


def check_job_id(text: str) -> str:
    """A job id as the scheduler makes them (32 lowercase hex digits), else ValueError."""
    if not JOB_ID_FORM.fullmatch(text):
        raise ValueError(f"a job id is 32 lowercase hex digits, not {text[:40]!r}")
    return text
