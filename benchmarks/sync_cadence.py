"""What each --sync setting costs, and what a crash could lose under it.

One run of the replication shape (1,600 requests: all behaviors under both framings of
both pairs, sequential, the sim engine) per setting and repetition, settings interleaved;
each run is a fresh process writing to a new results directory on the results disk
(``--results-dir``, default a temporary directory in this checkout, so not a tmpfs /tmp).
Reported per setting: the run's wall time (median), the number of fsyncs of the record
log, the most records written but not yet fsynced at any moment (what a power loss or an
OS crash could take; a killed process loses nothing written, as records reach the
operating system at every batch boundary), and the age of the oldest record at the moment
it was fsynced (how much generation time such a crash could take).

    EVALKIT_HARMBENCH=../shared/data/harmbench python benchmarks/sync_cadence.py --reps 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = ("every-batch", "every-16", "every-100ms", "every-1000ms")


def worker(sync: str, harmbench: str | None, results: Path) -> None:
    """Run once, noting when each record is encoded for the log (just before it is
    written) and when the record log is fsynced; print the measurements as JSON."""
    sys.path.insert(0, str(ROOT))
    from evalkit import runs
    from evalkit.cli import main

    unsynced: list[float] = []  # encode times of records written since the last fsync
    worst = {"fsyncs": 0, "records_at_risk": 0, "seconds_at_risk": 0.0}
    real_fsync, real_to_line = os.fsync, runs.Record.to_line

    def to_line(record) -> str:
        unsynced.append(time.perf_counter())
        return real_to_line(record)

    def fsync(fd: int) -> None:
        real_fsync(fd)
        if os.readlink(f"/proc/self/fd/{fd}").endswith(runs.RECORDS) and unsynced:
            worst["fsyncs"] += 1
            worst["records_at_risk"] = max(worst["records_at_risk"], len(unsynced))
            worst["seconds_at_risk"] = max(worst["seconds_at_risk"], time.perf_counter() - unsynced[0])
            unsynced.clear()

    runs.os.fsync, runs.Record.to_line = fsync, to_line  # the run store's own references
    args = ["run", "--engine", "sim", "--model", "study-pilot", "--protocol", "randomized", "--batch-size", "1",
            "--results-dir", str(results), "--sync", sync] + (["--harmbench", harmbench] if harmbench else [])
    sys.stdout = open(os.devnull, "w")
    started = time.perf_counter()
    code = main(args)
    wall = time.perf_counter() - started
    sys.stdout = sys.__stdout__
    if code != 0 or unsynced:
        raise SystemExit(f"evalkit run exited {code} with {len(unsynced)} records never fsynced")
    print(json.dumps({"wall_s": wall, **worst}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--harmbench", default=None)
    parser.add_argument("--results-dir", default=None, help="where the runs are written (a real disk)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.harmbench, Path(args.out))
        return
    settings = [s for s in args.settings.split(",") if s]
    parent = Path(args.results_dir) if args.results_dir else ROOT
    measured: dict[str, list[dict]] = {s: [] for s in settings}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix=".evalkit-sync-", dir=parent) as tmp:
        for rep in range(args.reps):
            for setting in settings if rep % 2 == 0 else reversed(settings):
                out = Path(tmp) / f"{setting}-{rep}"
                command = [sys.executable, __file__, "--worker", setting, "--out", str(out)]
                if args.harmbench:
                    command += ["--harmbench", args.harmbench]
                done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
                if done.returncode != 0:
                    raise SystemExit(f"{setting} failed:\n{done.stderr[-3000:]}")
                measured[setting].append(json.loads(done.stdout.strip().splitlines()[-1]))
    load_after = os.getloadavg()
    print(f"--sync trade-off: 1,600 requests (sim, batch 1), {args.reps} interleaved runs per setting on "
          f"{parent}; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after on {os.cpu_count()} CPUs")
    print("| --sync | run wall s (median) | fsyncs of the record log | most records unsynced | "
          "oldest unsynced record s |\n|---|---|---|---|---|")
    for setting in settings:
        rows = measured[setting]
        print(f"| {setting} | {statistics.median(r['wall_s'] for r in rows):.2f} | "
              f"{statistics.median(r['fsyncs'] for r in rows):.0f} | {max(r['records_at_risk'] for r in rows)} | "
              f"{max(r['seconds_at_risk'] for r in rows):.3f} |")


if __name__ == "__main__":
    main()
