"""The progress bar the long commands draw on stderr."""

from __future__ import annotations

import sys


class ProgressBar:
    """A one-line progress bar on stderr, redrawn at most ``rate`` times a second."""

    def __init__(self, label: str, enabled: bool = True, rate: float = 5.0) -> None:
        self.label, self.enabled, self.interval = label, enabled, 1.0 / rate
        self.last, self.drawn = 0.0, False

    def update(self, done: int, total: int, text: str = "", force: bool = False) -> None:
        import time

        now = time.monotonic()
        if not self.enabled or (not force and done < total and now - self.last < self.interval):
            return
        self.last, self.drawn = now, True
        width = 24
        filled = int(width * done / max(total, 1))
        bar = "#" * filled + "-" * (width - filled)
        print(f"\r{self.label} [{bar}] {done}/{total} {text}", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled and self.drawn:
            print(file=sys.stderr, flush=True)
