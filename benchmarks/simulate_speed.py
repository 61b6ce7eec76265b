"""How much faster `evalkit simulate` is than running the sim engine and judge request by request.

Both paths produce the same decisions (tests/integration/test_simulate.py checks it); this
measures, in one run, the ratio that makes 200 replications of a 400-behavior protocol
take about a second.

    EVALKIT_HARMBENCH=../shared/data/harmbench python benchmarks/simulate_speed.py --reps 20
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from evalkit.analysis import Thresholds, analyse, paired_outcomes  # noqa: E402
from evalkit.datasets import load_behaviors, resolve_harmbench  # noqa: E402
from evalkit.engines import EngineConfig, engine_requests  # noqa: E402
from evalkit.engines.sim import SimEngine, load_profile  # noqa: E402
from evalkit.framings import load_framing_set  # noqa: E402
from evalkit.judges import create_judge  # noqa: E402
from evalkit.protocols import build_schedule, order_protocol  # noqa: E402
from evalkit.runs import Record  # noqa: E402
from evalkit.simulate import simulate  # noqa: E402


def engine_path(behaviors, pair, profile_name, protocol, reps, batch_size):
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--profile", default="study-pilot")
    parser.add_argument("--protocol", default="randomized")
    parser.add_argument("--batch-size", type=int, default=1)
    args = parser.parse_args()
    behaviors = load_behaviors(resolve_harmbench(None)).behaviors
    pair = load_framing_set("study-raw").pair("free-vs-paid")
    started = time.perf_counter()
    engine_path(behaviors, pair, args.profile, args.protocol, args.reps, args.batch_size)
    slow = time.perf_counter() - started
    started = time.perf_counter()
    simulate(behaviors, pair, load_profile(args.profile), args.protocol, args.reps, args.batch_size)
    fast = time.perf_counter() - started
    print(f"{args.reps} replications of {args.protocol} on {len(behaviors)} behaviors, batch {args.batch_size}")
    print(f"  engine + judge, request by request: {slow:7.2f} s  ({slow / args.reps * 1000:6.1f} ms/replication)")
    print(f"  evalkit simulate (vectorized):      {fast:7.2f} s  ({fast / args.reps * 1000:6.1f} ms/replication)")
    print(f"  speed-up: {slow / fast:.1f}x")


if __name__ == "__main__":
    main()
