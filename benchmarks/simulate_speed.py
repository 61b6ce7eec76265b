"""How much faster `evalkit simulate` is than running the sim engine and judge request by request,
and (with ``--baseline CHECKOUT``) than another checkout's `evalkit simulate`.

Both paths ask one core (``evalkit.engines.sim.SimCore``) for their decisions: the engine one
batch per call, then renders text and judges it; `simulate` whole schedules without text. This
measures, in one run, the ratio that makes 200 replications of a 400-behavior protocol take
about a second. ``--baseline`` times the same replications with another checkout's code (e.g.
a worktree of main) in a subprocess, alternating rounds, and reports the ratio of medians.

    EVALKIT_HARMBENCH=../shared/data/harmbench python benchmarks/simulate_speed.py --reps 20
    EVALKIT_HARMBENCH=../shared/data/harmbench python benchmarks/simulate_speed.py --reps 50 --baseline ../main
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))  # run from a checkout

from evalkit.analysis import Thresholds, analyse, paired_outcomes  # noqa: E402
from evalkit.datasets import Behavior, load_behaviors, resolve_harmbench  # noqa: E402
from evalkit.engines import EngineConfig, engine_requests  # noqa: E402
from evalkit.engines.sim import SimEngine  # noqa: E402
from evalkit.framings import FramingPair, load_framing_set  # noqa: E402
from evalkit.judges import create_judge  # noqa: E402
from evalkit.protocols import build_schedule, order_protocol  # noqa: E402
from evalkit.runs import Record  # noqa: E402

# times `simulate` in a checkout given as argv[1]: prints the seconds as JSON
TIMER = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from evalkit.datasets import load_behaviors, resolve_harmbench
from evalkit.engines.sim import load_profile
from evalkit.framings import load_framing_set
from evalkit.simulate import simulate
profile, protocol, reps, batch_size = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
behaviors = load_behaviors(resolve_harmbench(None)).behaviors
pair = load_framing_set("study-raw").pair("free-vs-paid")
simulate(behaviors, pair, load_profile(profile), protocol, 2, batch_size)  # warm: imports, caches
started = time.perf_counter()
simulate(behaviors, pair, load_profile(profile), protocol, reps, batch_size)
print(json.dumps(time.perf_counter() - started))
"""


def engine_path(behaviors: Sequence[Behavior], pair: FramingPair, profile_name: str, protocol: str, reps: int,
                batch_size: int) -> None:
    judge = create_judge("refusal")
    for seed in range(reps):
        engine = SimEngine(EngineConfig(model=profile_name, seed=seed))
        schedule = build_schedule(behaviors, pair, protocol, seed, batch_size)
        records = []
        for batch in schedule.batches():
            for request, response in zip(batch, engine.generate(engine_requests(batch))):
                records.append(Record(request.index, request.behavior_id, request.framing_id, request.slot,
                                      request.position, request.batch, "", "", response,
                                      {"refusal": judge.judge(request, response).label}))
        analyse(paired_outcomes(records, "refusal"), Thresholds(), order_varies=order_protocol(protocol).order_varies,
                with_power=False)


def engine_us_per_request(behaviors: Sequence[Behavior], pair: FramingPair, profile_name: str, batch_size: int,
                          rounds: int = 3) -> float:
    """The sim engine alone (no judge), best of ``rounds`` passes over one schedule."""
    schedule = build_schedule(behaviors, pair, "randomized", 0, batch_size)
    batches = [engine_requests(batch) for batch in schedule.batches()]
    best = float("inf")
    for _ in range(rounds):
        engine = SimEngine(EngineConfig(model=profile_name, seed=0))
        started = time.perf_counter()
        for batch in batches:
            engine.generate(batch)
        best = min(best, time.perf_counter() - started)
    return best / len(schedule) * 1e6


def simulate_seconds(checkout: Path, args: argparse.Namespace) -> float:
    out = subprocess.run([sys.executable, "-c", TIMER, str(checkout), args.profile, args.protocol, str(args.reps),
                          str(args.batch_size)], capture_output=True, text=True, check=True)
    return float(json.loads(out.stdout))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--profile", default="study-pilot")
    parser.add_argument("--protocol", default="randomized")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--baseline", default=None, help="another checkout whose simulate to time against this one")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds with --baseline (default 5)")
    args = parser.parse_args()
    behaviors = load_behaviors(resolve_harmbench(None)).behaviors
    pair = load_framing_set("study-raw").pair("free-vs-paid")
    started = time.perf_counter()
    engine_path(behaviors, pair, args.profile, args.protocol, args.reps, args.batch_size)
    slow = time.perf_counter() - started
    fast = simulate_seconds(HERE, args)
    print(f"{args.reps} replications of {args.protocol} on {len(behaviors)} behaviors, batch {args.batch_size}")
    print(f"  engine + judge, request by request: {slow:7.2f} s  ({slow / args.reps * 1000:6.1f} ms/replication)")
    print(f"  evalkit simulate (vectorized):      {fast:7.2f} s  ({fast / args.reps * 1000:6.1f} ms/replication)")
    print(f"  speed-up: {slow / fast:.1f}x")
    single, batched = (engine_us_per_request(behaviors, pair, args.profile, size) for size in (1, 16))
    print(f"  sim engine alone, per request: batch 1 (scalar path) {single:.1f} us, batch 16 (vectorized) "
          f"{batched:.1f} us; batch 1 / batch 16 = {single / batched:.2f}")
    if args.baseline:
        baseline = Path(args.baseline).resolve()
        mine, theirs = [], []
        for _ in range(args.rounds):
            theirs.append(simulate_seconds(baseline, args))
            mine.append(simulate_seconds(HERE, args))
        ratio = statistics.median(theirs) / statistics.median(mine)
        print(f"  simulate, {args.rounds} alternating rounds (median ms/replication): baseline {baseline}: "
              f"{statistics.median(theirs) / args.reps * 1000:.1f}, this checkout: "
              f"{statistics.median(mine) / args.reps * 1000:.1f}; baseline/this = {ratio:.2f}x")


if __name__ == "__main__":
    main()
