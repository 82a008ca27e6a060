"""`dcp worker`: a headless worker. Debian's Chromium, driven by Playwright, opens the portal's
headless worker page (worker_static/headless.html), whose Supervisor computes slices in the same
sandboxes as the Worker tab: work functions never run in this process."""

from __future__ import annotations

from .options import WorkerOptions, headless_url
from .runner import WorkerError, run_worker

__all__ = ["WorkerError", "WorkerOptions", "headless_url", "run_worker"]
