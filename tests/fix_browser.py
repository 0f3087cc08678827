"""Debian's Chromium for the page tests (through Playwright), and where their screenshots go."""

from pathlib import Path

SCREENSHOTS = Path(__file__).resolve().parent / "artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
