"""What a warm re-run of the main job costs next to a cold one.

The main job is `pytest` on the default sim session (README's first command). Cold: an
empty results directory, so every run is generated. Warm: the same command again on the
directory the cold run filled, so every run is reused and nothing is generated. Each
repetition runs cold then warm back to back, and the ratio is the median over
repetitions of warm over cold, so load from other processes on a shared machine falls on
both.

Two spans are measured in each pytest process: the whole process (wall and CPU, what a
user waits for, including starting Python and importing pytest, its plugins, evalkit,
scipy and pandas), and the session (from ``pytest_sessionstart`` to the end of the summary
hook: collection, planning, runs, analysis, tests, summary), which is evalkit's own work.

The floor: ``pytest`` on a file with one empty test, under the same pytest.ini and so the
same plugins, in each repetition: what any pytest run costs here before evalkit does
anything. The table gives it and the warm run minus it (what evalkit itself still costs).

``--bytecode on``: the child processes run with Python's default bytecode cache (this
machine sets ``PYTHONDONTWRITEBYTECODE``, so by default every run compiles evalkit's modules
and pytest re-rewrites its plugins' modules from source: a cost a usual installation pays
once). A first, unmeasured run fills the caches.

``--openai``: the same cold/warm pairs with a real engine in the cold run, the
OpenAI-compatible stub server of benchmarks/peer_inspect.py (started here on 127.0.0.1,
stopping by itself), one model ``stub``: the cold run then pays HTTP requests, as a user's
does, where the sim's cold run pays almost nothing for generation.

    EVALKIT_HARMBENCH=../shared/data/harmbench python benchmarks/warm_cold.py --reps 5 [--bytecode on] [--openai]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLOCK_PLUGIN = "_session_clock"


CHILD_ENV: dict[str, str] = dict(os.environ)  # --bytecode on drops PYTHONDONTWRITEBYTECODE from it


def run_floor(directory: Path) -> dict:
    """pytest on one empty test under this repository's pytest.ini (the same plugins)."""
    test = directory / "test_floor.py"
    test.write_text("def test_nothing():\n    pass\n")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", str(ROOT / "pytest.ini"),
               "--rootdir", str(ROOT), str(test)]
    done = subprocess.run(command, cwd=ROOT, env=CHILD_ENV, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"the floor run failed (exit {done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return {"wall_s": wall, "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)}


def run_pytest(results: Path, clock_file: Path, extra: list[str]) -> dict:
    env = {**CHILD_ENV, "EVALKIT_SESSION_CLOCK": str(clock_file),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", CLOCK_PLUGIN,
                           f"--results-dir={results}", *extra], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=1800)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if "evalkit summary" not in done.stdout:
        raise SystemExit(f"pytest printed no evalkit summary (exit {done.returncode}):\n{done.stdout[-3000:]}\n"
                         f"{done.stderr[-3000:]}")
    session = json.loads(clock_file.read_text())
    return {"wall_s": wall, "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "session_wall_s": session["wall_s"], "session_cpu_s": session["cpu_s"], "exit": done.returncode,
            "outcome": done.stdout.strip().splitlines()[-1].rsplit(" in ", 1)[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--openai", action="store_true",
                        help="a real engine in the cold run: the OpenAI-compatible stub server of peer_inspect.py")
    parser.add_argument("--bytecode", choices=("env", "on"), default="env",
                        help="env: as this environment says (PYTHONDONTWRITEBYTECODE); on: Python's default cache")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --), e.g. -- -n 2")
    args = parser.parse_args()
    if args.bytecode == "on":
        CHILD_ENV.pop("PYTHONDONTWRITEBYTECODE", None)
    load_before = os.getloadavg()
    extra = list(args.pytest_args)
    server = None
    if args.openai:
        from peer_inspect import start_server

        server, base_url = start_server(1800)
        extra = ["--engine", "openai", f"--base-url={base_url}", "--model", "stub", "--request-timeout", "30",
                 "--max-retries", "0", *extra]
    pairs, floors = [], []
    try:
        with tempfile.TemporaryDirectory(prefix="evalkit-warm-cold-") as tmp:
            if args.bytecode == "on":  # fill the bytecode caches once, unmeasured
                run_pytest(Path(tmp) / "results-prime", Path(tmp) / "clock.json", extra)
            for rep in range(args.reps):
                results = Path(tmp) / f"results-{rep}"
                cold = run_pytest(results, Path(tmp) / "clock.json", extra)
                warm = run_pytest(results, Path(tmp) / "clock.json", extra)
                floors.append(run_floor(Path(tmp)))
                if cold["outcome"] != warm["outcome"]:
                    raise SystemExit(f"warm and cold runs differ: {cold['outcome']!r} vs {warm['outcome']!r}")
                pairs.append((cold, warm))
                print(f"rep {rep}: cold {cold['wall_s']:.2f} s (session {cold['session_wall_s']:.2f} s), "
                      f"warm {warm['wall_s']:.2f} s (session {warm['session_wall_s']:.2f} s), "
                      f"floor {floors[-1]['wall_s']:.2f} s", file=sys.stderr)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
    load_after = os.getloadavg()
    rows = []
    for key, label in (("wall_s", "process wall s"), ("cpu_s", "process CPU s"),
                       ("session_wall_s", "session wall s"), ("session_cpu_s", "session CPU s")):
        ratios = [warm[key] / cold[key] for cold, warm in pairs]
        rows.append({"measure": label, "cold": statistics.median(c[key] for c, _ in pairs),
                     "warm": statistics.median(w[key] for _, w in pairs), "ratio": statistics.median(ratios),
                     "ratio_range": [min(ratios), max(ratios)]})
    for key, label in (("cpu_s", "process CPU s minus the floor"), ("wall_s", "process wall s minus the floor")):
        cold_net = [c[key] - f[key] for (c, _), f in zip(pairs, floors)]
        warm_net = [w[key] - f[key] for (_, w), f in zip(pairs, floors)]
        ratios = [w / c for c, w in zip(cold_net, warm_net)]
        rows.append({"measure": label, "cold": statistics.median(cold_net), "warm": statistics.median(warm_net),
                     "ratio": statistics.median(ratios), "ratio_range": [min(ratios), max(ratios)]})
    engine = "openai stub server, model stub" if args.openai else "default sim session"
    bytecode = ("Python's default bytecode cache" if args.bytecode == "on" else
                f"PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '(unset)')}")
    print(f"main job (pytest, {engine}, {bytecode}): {args.reps} cold/warm pairs; pytest says "
          f"{pairs[0][0]['outcome']!r} (exit {pairs[0][0]['exit']}); load average {load_before[0]:.2f} before, "
          f"{load_after[0]:.2f} after on {os.cpu_count()} CPUs")
    floor_cpu, floor_wall = (statistics.median(f[key] for f in floors) for key in ("cpu_s", "wall_s"))
    print(f"floor (pytest on one empty test, same pytest.ini and plugins): CPU {floor_cpu:.2f} s, wall "
          f"{floor_wall:.2f} s (median of {len(floors)})")
    print("| measure | cold | warm | warm/cold (median, min-max) |\n|---|---|---|---|")
    for row in rows:
        low, high = row["ratio_range"]
        print(f"| {row['measure']} | {row['cold']:.2f} | {row['warm']:.2f} | {row['ratio']:.3f} "
              f"({low:.3f}-{high:.3f}) |")
    if args.json:
        print(json.dumps({"rows": rows, "floors": floors}, indent=2))


if __name__ == "__main__":
    main()
