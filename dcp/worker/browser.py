"""Debian's Chromium, headless, under Playwright: the flags (one definition, also used by the
end-to-end tests through testkit.livesite) and a launch that says what is missing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# A real WebGPU adapter without a GPU: SwiftShader, Chromium's software Vulkan (slow, but WebGPU).
WEBGPU_CHROMIUM_ARGS = [
    *(arg for arg in CHROMIUM_ARGS if arg != "--disable-gpu"),
    "--enable-unsafe-webgpu",
    "--enable-features=Vulkan",
    "--use-webgpu-adapter=swiftshader",
    "--use-angle=swiftshader",
]

MISSING_PLAYWRIGHT = (
    "dcp worker needs Playwright: pip install 'dcp-portal[worker]' (or pip install playwright)"
)
MISSING_CHROMIUM = (
    "dcp worker needs Debian's Chromium at {path}: apt-get install chromium "
    "(or point $CHROMIUM at another Chromium)"
)


class BrowserMissing(RuntimeError):
    """Playwright or Chromium is not installed; the message says what to install."""


def chromium_path() -> str:
    """The Chromium executable, or BrowserMissing naming the package to install."""
    if Path(CHROMIUM).is_file() or shutil.which(CHROMIUM):
        return CHROMIUM
    raise BrowserMissing(MISSING_CHROMIUM.format(path=CHROMIUM))


def start_playwright() -> Any:
    """A started sync Playwright (stop() it when done), or BrowserMissing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise BrowserMissing(MISSING_PLAYWRIGHT) from None
    return sync_playwright().start()


def launch_chromium(playwright: Any, *, gpu: bool) -> Any:
    """Headless Chromium; with `gpu`, WebGPU on. Signals are this process's to handle: Ctrl-C
    stops the worker cleanly before the browser closes."""
    return playwright.chromium.launch(
        executable_path=chromium_path(),
        args=WEBGPU_CHROMIUM_ARGS if gpu else CHROMIUM_ARGS,
        handle_sigint=False,
        handle_sigterm=False,
        handle_sighup=False,
    )
