"""Progress of runs being generated, for a terminal or a CI log.

A run on a real engine takes hours; silence looks like a hang. On a terminal one line per
run is rewritten in place (done/total, requests per second, ETA); in a log (no TTY) a
plain line is written every ``interval`` seconds, so a CI log shows life without
drowning. Each run ends with one line saying what happened (new, resumed or reused). The
pytest layer and the CLI both use this, each with its own way to write.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .runs import RunResult
    from .suites import RunPlan

DEFAULT_INTERVAL_S = 10.0
ENV_INTERVAL = "EVALKIT_PROGRESS_SECONDS"  # seconds between plain lines in a log


def interval_from_env(default: float = DEFAULT_INTERVAL_S) -> float:
    try:
        return max(0.0, float(os.environ.get(ENV_INTERVAL, default)))
    except ValueError:
        return default


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def outcome(result: RunResult | None) -> str:
    """What happened to a run: new, resumed or reused, and how many requests were generated."""
    if result is None:
        return "failed"
    state = "reused" if result.reused else (f"resumed at {result.resumed_from}" if result.resumed_from else "new")
    return f"{state}, {result.generated} generated"


class LineProgress:
    """``write(text, live)`` puts out one line; ``live`` lines replace the previous live line
    (a terminal), the others are appended. ``finished(plan, result)`` makes each run's last
    line (None: no line)."""

    def __init__(self, write: Callable[[str, bool], None], *, live: bool, interval: float | None = None,
                 finished: Callable[[RunPlan, RunResult | None], str | None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._write, self.live, self._clock = write, live, clock
        self.interval = interval_from_env() if interval is None else interval
        self._finished = finished or (lambda plan, result: f"evalkit: {plan.row_id}: {outcome(result)}")
        self._started = self._last = 0.0
        self._first_done: int | None = None
        self._label = ""

    def run_started(self, plan: RunPlan) -> Callable[[int, int], None]:
        self._label, self._started, self._last, self._first_done = plan.row_id, self._clock(), self._clock(), None
        return self._progress

    def _progress(self, done: int, total: int) -> None:
        now = self._clock()
        if self._first_done is None:  # records from before a resume are not this session's speed
            self._first_done, self._started = done, self._last
        due = (now - self._last >= 0.1) if self.live else (now - self._last >= self.interval)
        if not due and not (self.live and done >= total):
            return
        self._last = now
        elapsed = max(now - self._started, 1e-9)
        rate = (done - self._first_done) / elapsed if done > self._first_done else 0.0
        eta = _duration((total - done) / rate) if rate > 0 else "?"
        self._write(f"evalkit: {self._label}: {done}/{total} requests, {rate:.1f} req/s, ETA {eta}", self.live)

    def run_finished(self, plan: RunPlan, result: RunResult | None) -> None:
        text = self._finished(plan, result)
        if text is not None:
            self._write(text, False)


def line_writer(write_raw: Callable[[str], None], flush: Callable[[], None] = lambda: None, width: int = 100
                ) -> Callable[[str, bool], None]:
    """A ``write(text, live)`` over a raw text stream: live lines overwrite each other with a
    carriage return; the next plain line replaces the last live one and ends it."""
    state = {"live": False}

    def write(text: str, live: bool) -> None:
        prefix = "\r" if state["live"] else ""
        write_raw(prefix + text.ljust(width) if live or state["live"] else text)
        if not live:
            write_raw("\n")
        state["live"] = live
        flush()

    return write
