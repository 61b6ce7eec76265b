"""Coverage of the gap-change interval (``stats.gap_change``, MOVER) on sim profiles.

A model update is simulated as two sim profiles answering the same behaviors with the same
seed (they share each behavior's latent propensity, as two versions of one model do). The
true change of the gap is the mean of the estimate over many seeds; the interval should
cover it in about 95% of replications. Measured here (1000 replications, truth from 3000
seeds), for reference: null -> training-aware 96.3% (Wald on the 16 cells 93.5%, paired
percentile bootstrap 93.8%); qwen-control -> training-aware 96.6% (94.7%, 94.9%).
"""

import numpy as np
import pytest

from evalkit.datasets import Selection, load_behaviors, select
from evalkit.engines.sim import load_profile
from evalkit.framings import load_framing_set
from evalkit.judges import REFUSAL
from evalkit.simulate import ScheduleModel
from evalkit.stats import gap_change

pytestmark = pytest.mark.slow


def _verdicts(outcomes):
    keep = outcomes.usable()
    return (np.array([outcomes.free_labels[i] == REFUSAL for i in keep]),
            np.array([outcomes.paid_labels[i] == REFUSAL for i in keep]))


@pytest.mark.parametrize("baseline, candidate, protocol, n, batch_size", [
    ("null", "training-aware", "randomized", 400, 1),  # the replication design
    ("study-pilot", "null", "fixed", 200, 16),  # the pilot design: an artifact that goes away
])
def test_gap_change_interval_covers_the_true_change(harmbench_csv, baseline, candidate, protocol, n, batch_size):
    behaviors = select(load_behaviors(harmbench_csv), Selection(first=n)).behaviors
    pair = load_framing_set("study-raw").pair("free-vs-paid")
    models = [ScheduleModel(behaviors, pair, load_profile(name)) for name in (baseline, candidate)]

    def replicate(seed):
        (free_b, paid_b), (free_c, paid_c) = (_verdicts(m.run(protocol, seed, batch_size).outcomes) for m in models)
        return free_b, paid_b, free_c, paid_c

    def estimate(free_b, paid_b, free_c, paid_c):
        return np.mean((paid_c.astype(float) - free_c) - (paid_b.astype(float) - free_b))

    truth = np.mean([estimate(*replicate(seed)) for seed in range(10_000, 10_800)])
    reps = 400
    covered = 0
    for seed in range(reps):
        low, high = gap_change(*replicate(seed)).change_ci
        covered += low <= truth <= high
    # near 95% (+-2.2 points is the simulation error of 400 replications); slightly conservative is allowed
    assert 0.925 <= covered / reps <= 0.99, (covered / reps, truth)
