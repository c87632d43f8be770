"""A training subprocess whose output is followed live (for the fault/distribution tests)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Run:
    """`python <args>` from the repo root; tracks the last "k/N" progress line's step."""

    def __init__(self, args: list[str], **env: str):
        env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="",
                   **env)
        self.proc = subprocess.Popen([sys.executable, *args], cwd=REPO, env=env, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines: list[str] = []
        self.step = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
            m = re.search(r"\] (\d+)/\d+ ", line)
            if m:
                self.step = int(m.group(1))

    def wait_for_step(self, step: int, timeout: float = 300) -> None:
        end = time.monotonic() + timeout
        while self.step < step:
            assert self.proc.poll() is None, f"exited early:\n{self.output[-3000:]}"
            assert time.monotonic() < end, f"no step {step} after {timeout} s"
            time.sleep(0.05)

    def finish(self, timeout: float = 300) -> int:
        """Waits for the exit (killing it past `timeout`) and returns the exit code."""
        try:
            rc = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(10)
        return rc

    @property
    def output(self) -> str:
        return "".join(self.lines)
