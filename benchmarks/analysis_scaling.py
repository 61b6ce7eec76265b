"""Analysis time and peak memory of one run as the number of behaviors grows.

For each n (default 400, 4,000, 40,000, 100,000) it writes a synthetic behaviors CSV
(placeholder text, 7 semantic categories), generates one randomized free/paid run on
the sim engine into a work directory (reused on later invocations), then measures, in a
fresh subprocess per n, what a session does after generation: read and verify the
stored run, analyse it (paired statistics with the power search, crossover, category
breakdowns, bootstrap) and write the summary. It reports seconds and peak RSS per
stage, and the growth exponent between consecutive sizes (1 = linear, 2 = quadratic).
Last, `evalkit stats paired --table 0,0,0,N --json` for the largest N.

    python benchmarks/analysis_scaling.py                          # this checkout
    python benchmarks/analysis_scaling.py --evalkit-root /tmp/old  # another checkout's
                                                                   # analysis, same runs
The analysis subprocesses run under an address-space limit (--memory-limit-gb) and a
timeout, so a quadratic version fails fast instead of exhausting a shared machine.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CATEGORIES = ("chemical_biological", "cybercrime_intrusion", "harassment_bullying", "harmful", "illegal",
              "misinformation_disinformation", "copyright_free")

# Both run in a subprocess against the evalkit of --evalkit-root, so each version reads
# runs in its own store format.
SESSION = r"""
import json, resource, sys, time
root, csv_path, results, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
sys.path.insert(0, root)
from evalkit import report
from evalkit.suites import EnginePool, SessionConfig, Suite, analyse_plans, prepare, run_plan

config = SessionConfig(models=("study-pilot",), harmbench=csv_path, pairs=("free-vs-paid",), results_dir=results,
                       custom_suite=Suite("bench", "benchmark", "randomized", n, 256, "bench", True),
                       session_id="benchmark")
"""
GENERATE = SESSION + r"""
session = prepare(config)
pool = EnginePool()
started = time.perf_counter()
run_plan(session, session.plans[0], pool)
pool.close()
print(json.dumps({"seconds": time.perf_counter() - started}))
"""
ANALYSIS = SESSION + r"""
def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

def no_engine(cfg):
    raise RuntimeError("the run must already be complete")

baseline = peak_mb()
times = {}
started = time.perf_counter()
session = prepare(config)
times["plan"] = time.perf_counter() - started
started = time.perf_counter()
plan = session.plans[0]
run = run_plan(session, plan, EnginePool(factory=no_engine))
times["read"] = time.perf_counter() - started
started = time.perf_counter()
rows = analyse_plans(session, [(plan, run)])
times["analyse"] = time.perf_counter() - started
started = time.perf_counter()
summary = report.summary_rows(rows)
report.write_summary(summary, results)
times["report"] = time.perf_counter() - started
print(json.dumps({"times": times, "baseline_mb": baseline, "peak_mb": peak_mb(), "n": summary[0]["n"],
                  "min_detectable_gap": summary[0]["min_detectable_gap"]}))
"""

STATS = r"""
import contextlib, io, json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from evalkit.cli import main
started = time.perf_counter()
with contextlib.redirect_stdout(io.StringIO()):
    code = main(sys.argv[2:])
print(json.dumps({"exit": code, "seconds": time.perf_counter() - started,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def write_csv(path: Path, n: int) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Behavior", "FunctionalCategory", "SemanticCategory", "Tags", "ContextString", "BehaviorID"])
        for i in range(n):
            writer.writerow([f"Synthetic placeholder behavior number {i}", "standard", CATEGORIES[i % len(CATEGORIES)],
                             "", "", f"synthetic_{i:06d}"])


def limited(limit_bytes: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))
    return apply


def measure(command: list[str], limit_gb: float, timeout: float) -> tuple[dict | None, str, float]:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    started = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env,
                              preexec_fn=limited(int(limit_gb * 2**30)))
    except subprocess.TimeoutExpired:
        return None, f"killed after {timeout:.0f} s", time.perf_counter() - started
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        if "MemoryError" in done.stderr or "Unable to allocate" in done.stderr:
            last = f"out of memory (limit {limit_gb:g} GB)"
        return None, last[:100], elapsed
    return json.loads(done.stdout.strip().splitlines()[-1]), "", elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="400,4000,40000,100000")
    parser.add_argument("--workdir", default=None, help="where CSVs and runs are kept (default: a temp dir)")
    parser.add_argument("--evalkit-root", default=str(ROOT), help="checkout whose evalkit analyses (default: this)")
    parser.add_argument("--memory-limit-gb", type=float, default=6.0)
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="evalkit-analysis-scaling-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"work directory {workdir}; analysis by the evalkit in {args.evalkit_root}")
    rows = []
    for n in sizes:
        csv_path, results = workdir / f"behaviors-{n}.csv", workdir / f"results-{n}"
        if not csv_path.exists():
            write_csv(csv_path, n)
        session = [args.evalkit_root, str(csv_path), str(results), str(n)]
        made, failure, _ = measure([sys.executable, "-c", GENERATE, *session], args.memory_limit_gb, args.timeout)
        if made is None:
            print(f"n={n}: generation failed: {failure}", flush=True)
            rows.append((n, None, None, f"generation failed: {failure}", 0.0))
            continue
        out, failure, wall = measure([sys.executable, "-c", ANALYSIS, *session], args.memory_limit_gb, args.timeout)
        rows.append((n, made["seconds"], out, failure, wall))
        shown = failure or (f"analysis {sum(out['times'].values()):.2f} s, peak {out['peak_mb']:.0f} MB")
        print(f"n={n}: run ready in {made['seconds']:.1f} s (generated, or reused from the work directory); {shown}",
              flush=True)

    print()
    print("| behaviors | read + verify (s) | analyse (s) | summary (s) | analysis total (s) | peak RSS (MB) "
          "| time exponent | RSS above imports (MB) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    previous = None
    for n, _generation, out, failure, _wall in rows:
        if out is None:
            print(f"| {n:,} | | | | {failure} | | | |")
            previous = None
            continue
        t = out["times"]
        total = t["read"] + t["analyse"] + t["report"]
        exponent = ""
        if previous is not None:
            exponent = f"{math.log(total / previous[1]) / math.log(n / previous[0]):.2f}"
        print(f"| {n:,} | {t['read']:.2f} | {t['analyse']:.2f} | {t['report']:.2f} | {total:.2f} | "
              f"{out['peak_mb']:.0f} | {exponent} | {out['peak_mb'] - out['baseline_mb']:.0f} |")
        previous = (n, total)

    table = f"0,0,0,{max(sizes)}"
    out, failure, _ = measure([sys.executable, "-c", STATS, args.evalkit_root, "stats", "paired", "--table", table,
                               "--json"], args.memory_limit_gb, args.timeout)
    result = failure or f"exit {out['exit']}, {out['seconds']:.3f} s in evalkit, peak RSS {out['peak_mb']:.0f} MB"
    print(f"\nevalkit stats paired --table {table} --json: {result}")

if __name__ == "__main__":
    main()
