"""A one-line progress bar with steps/s and ETA (plain log lines when not a TTY)."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, start: int = 0, every: int = 10, stream=None):
        self.total, self.start, self.every = total, start, max(1, every)
        self.stream = stream or sys.stderr
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self.t0 = time.perf_counter()
        self.last_print = 0.0

    def rate(self, step: int) -> float:
        done = step - self.start
        elapsed = time.perf_counter() - self.t0
        return done / elapsed if elapsed > 0 and done > 0 else 0.0

    def update(self, step: int, values: dict[str, float] | None = None,
               force: bool = False) -> None:
        now = time.perf_counter()
        if not force and not (self.tty and now - self.last_print > 0.2) and step % self.every:
            return
        self.last_print = now
        rate = self.rate(step)
        eta = (self.total - step) / rate if rate else float("nan")
        width = 24
        filled = int(width * step / max(1, self.total))
        bar = "#" * filled + "." * (width - filled)
        parts = " ".join(f"{k} {v:.3f}" for k, v in (values or {}).items())
        line = (f"[{bar}] {step}/{self.total} {rate:.2f} steps/s ETA {_fmt(eta)} {parts}")
        if self.tty:
            self.stream.write("\r" + line[:160].ljust(100))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _fmt(seconds: float) -> str:
    if seconds != seconds:  # nan
        return "--:--"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"
