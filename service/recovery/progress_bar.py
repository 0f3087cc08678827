"""A one-line progress bar for long commands, drawn only when the stream is a terminal."""

import time
from typing import TextIO

WIDTH = 30
REDRAW_EVERY_S = 0.1


class ProgressBar:
    def __init__(self, stream: TextIO, label: str) -> None:
        self._stream = stream
        self._label = label
        self._shown = stream.isatty()
        self._drawn_at = 0.0

    def update(self, done: int, total: int) -> None:
        now = time.monotonic()
        if not self._shown or (now - self._drawn_at < REDRAW_EVERY_S and done < total):
            return
        self._drawn_at = now
        share = done / total if total else 1.0
        filled = round(WIDTH * min(share, 1.0))
        bar = "#" * filled + "-" * (WIDTH - filled)
        self._stream.write(f"\r{self._label} [{bar}] {done:,}/{total:,} ({share:.0%})")
        self._stream.flush()

    def finish(self) -> None:
        if self._shown and self._drawn_at:
            self._stream.write("\n")
            self._stream.flush()
