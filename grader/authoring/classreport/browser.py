"""Headless Chromium on a written class report: a screenshot, or the DOM after the page loaded.

Used to check the report in a real browser (the kit's tests) and to take the screenshot of
the docs (``examples/demo_batch/make_demo_batch.py``); the report itself needs no browser.
Chromium comes from the Debian package: ``apt-get install -y chromium`` (``/usr/bin/chromium``).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_HINT = "install it with `apt-get update && apt-get install -y chromium` (Debian), or set $AICS_CHROMIUM"
TIMEOUT = 90


class BrowserMissing(RuntimeError):
    """No Chromium on this machine; the message says how to install it."""


class BrowserFailed(RuntimeError):
    """Chromium ran but did not produce what was asked; the message has its exit code and last lines."""


def find() -> str:
    """The Chromium executable ($AICS_CHROMIUM, else the first of :data:`CANDIDATES` on $PATH)."""
    wanted = os.environ.get("AICS_CHROMIUM")
    for name in ([wanted] if wanted else []) + list(CANDIDATES):
        path = shutil.which(name)
        if path:
            return path
    raise BrowserMissing(f"no Chromium found ({', '.join(CANDIDATES)}); {INSTALL_HINT}")


def _run(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    # A profile folder of its own: no state shared with another run or a user's browser.
    cmd = [find(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
           "--no-first-run", "--disable-extensions", "--mute-audio", f"--user-data-dir={profile}", *args]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise BrowserFailed(f"Chromium did not finish within {TIMEOUT} s: {' '.join(cmd)}") from None


def _tail(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    return "\n".join(lines[-5:])


def screenshot(page: Path, png: Path, width: int = 1200, height: int = 2400) -> Path:
    """A ``width`` x ``height`` PNG of ``page`` (a local HTML file) at ``png``; raises BrowserMissing/BrowserFailed."""
    png = Path(png).resolve()
    png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="aics-chromium-") as profile:
        proc = _run([f"--screenshot={png}", f"--window-size={width},{height}", "--virtual-time-budget=5000",
                     Path(page).resolve().as_uri()], Path(profile))
    if not png.is_file():
        raise BrowserFailed(f"Chromium wrote no screenshot (exit {proc.returncode}):\n{_tail(proc)}")
    return png


def dump_dom(page: Path) -> str:
    """The DOM of ``page`` serialised after it loaded (scripts the page has have run)."""
    with tempfile.TemporaryDirectory(prefix="aics-chromium-") as profile:
        proc = _run(["--dump-dom", "--virtual-time-budget=5000", Path(page).resolve().as_uri()], Path(profile))
    if proc.returncode != 0 or "<html" not in proc.stdout:
        raise BrowserFailed(f"Chromium could not dump {page} (exit {proc.returncode}):\n{_tail(proc)}")
    return proc.stdout
