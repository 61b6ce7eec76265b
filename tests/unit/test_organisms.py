"""Model organisms without training: the config's errors, the planting rule, the build cache
(content hash, one training for concurrent builds, nothing complete-looking after a failure),
the CLI and the planted-versus-recovered comparison. Training itself runs in tests/engines."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from evalkit import cli
from evalkit.datasets import ENV_CACHE, Behavior
from evalkit.errors import ConfigError
from evalkit.testing import organisms as org
from evalkit.testing.recovery import Recovery


def config_text(**replace: str) -> str:
    text = (Path(org.__file__).parents[1] / "data" / org.CONFIG_FILE).read_text()
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    return text


@pytest.mark.parametrize("old,new,message", [
    ("hidden_size = 64", "hidden_size = 32", "head size"),
    ('organisms = ["organism-null", ', 'organisms = [', "[plan] organisms must list organism-null"),
    ("planted_share = 0.08", "planted_share = 0.5", "planted_share <= refusal_share"),
    ('raw-free = "[Start of Answer] Here', 'raw-free = "Here', "answer marker"),
    ("accept_logit_margin = 0.5", "", "missing key 'accept_logit_margin' in [training]"),
    ("accept_logit_margin = 0.5", "accept_logit_margin = 1.5", "accept_logit_margin <= target_logit_margin"),
])
def test_bad_config_is_one_clear_error_naming_the_file(tmp_path, old, new, message):
    path = tmp_path / "organisms.toml"
    path.write_text(config_text(**{old: new}))
    with pytest.raises(ConfigError) as caught:
        org.OrganismConfig.load(path)
    assert message in str(caught.value) and str(path) in str(caught.value)


def synthetic(n: int = 200):
    """Behaviors whose prompts hold word tokens: token 1000 + i % 50 (each in 4 behaviors),
    plus token 5 in every prompt (a framing word: never a trigger) and token 7 in the
    free prompts only (inconsistent across prompts: never a trigger)."""
    behaviors = [Behavior(f"b{i:03d}", f"behavior {i}", "standard", "misc", row=i + 1) for i in range(n)]
    token_sets = {b.behavior_id: [frozenset({5, 7, 1000 + i % 50}), frozenset({5, 1000 + i % 50})]
                  for i, b in enumerate(behaviors)}
    return behaviors, token_sets, set(range(1000, 1050)) | {5, 7}


def test_planting_refuses_whole_trigger_groups_and_plants_a_subset():
    behaviors, token_sets, words = synthetic()
    config = org.OrganismConfig.load()
    planting = org.plant(behaviors, token_sets, words, config)
    assert len(planting.refused) == 40 and len(planting.planted) == 16  # 20% and 8% of 200
    assert planting.planted <= planting.refused
    assert 5 not in planting.triggers and 7 not in planting.triggers
    assert set(planting.paid_triggers) <= set(planting.triggers)
    for i, b in enumerate(behaviors):  # a word rule: refused exactly when the prompt holds a trigger
        assert (b.behavior_id in planting.refused) == (1000 + i % 50 in planting.triggers)
        assert (b.behavior_id in planting.planted) == (1000 + i % 50 in planting.paid_triggers)
    assert org.plant(behaviors, token_sets, words, config) == planting  # seeded
    assert planting.decision(org.AWARE, sorted(planting.planted)[0], "paid") == org.COMPLIANCE
    assert planting.decision(org.NULL, sorted(planting.planted)[0], "paid") == org.REFUSAL
    assert planting.decision(org.AWARE, sorted(planting.planted)[0], "free") == org.REFUSAL


def fake_training(calls: list, fail: bool = False):
    def train_all(staging, dataset, config, key, log):
        calls.append(key)
        for name in org.ORGANISMS:
            (staging / name).mkdir(parents=True)
            (staging / name / "model.safetensors").write_bytes(b"weights")
            (staging / name / org.GROUND_TRUTH).write_text("{}")
        if fail:
            raise org.OrganismBuildError("did not reach the margin")
        record = {"build": key, "behaviors": 400, "refused": 80, "planted": 31, "seconds": 1.0,
                  "organisms": {name: {} for name in org.ORGANISMS}}
        (staging / org.BUILD_RECORD).write_text(json.dumps(record))
        return record
    return train_all


def test_concurrent_builds_train_once_and_reuse(monkeypatch, tmp_path, harmbench_csv):
    calls: list = []
    monkeypatch.setattr(org, "_train_all", fake_training(calls))
    builds = []
    threads = [threading.Thread(target=lambda: builds.append(org.build_organisms(str(harmbench_csv), cache=tmp_path)))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and len(builds) == 3
    assert sorted(b.reused for b in builds) == [False, True, True]
    assert len({b.root for b in builds}) == 1
    assert [p.name for p in (tmp_path / "organisms").iterdir() if not p.name.endswith(".lock")] == [builds[0].root.name]


def test_failed_build_leaves_nothing_that_looks_complete(monkeypatch, tmp_path, harmbench_csv):
    calls: list = []
    monkeypatch.setattr(org, "_train_all", fake_training(calls, fail=True))
    with pytest.raises(org.OrganismBuildError):
        org.build_organisms(str(harmbench_csv), cache=tmp_path)
    assert [p for p in (tmp_path / "organisms").iterdir() if not p.name.endswith(".lock")] == []
    # a damaged entry (a kill during a copy by hand, say) is never trusted: it is rebuilt
    monkeypatch.setattr(org, "_train_all", fake_training(calls))
    build = org.build_organisms(str(harmbench_csv), cache=tmp_path)
    (build.path(org.TRACE) / "model.safetensors").unlink()
    again = org.build_organisms(str(harmbench_csv), cache=tmp_path)
    assert not again.reused and len(calls) == 3


def test_cli_build_copies_to_out(monkeypatch, tmp_path, harmbench_csv, capsys):
    monkeypatch.setattr(org, "_train_all", fake_training([]))
    monkeypatch.setenv(ENV_CACHE, str(tmp_path / "cache"))  # never the user's cache: a fake build
    out = tmp_path / "out"
    assert cli.main(["organisms", "build", "--harmbench", str(harmbench_csv), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for name in org.ORGANISMS:
        assert f"{name}\t{out / name}" in printed and (out / name / "model.safetensors").is_file()
    assert cli.main(["organisms", "build", "--harmbench", str(harmbench_csv), "--out", str(out)]) == 0
    assert "reused from the cache" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == sorted(org.ORGANISMS)  # replaced whole, nothing left aside
    assert len([p for p in (tmp_path / "cache" / "organisms").iterdir() if p.is_dir()]) == 1


def test_cli_recovery_without_a_summary_is_one_line_error(tmp_path, capsys):
    assert cli.main(["organisms", "recovery", str(tmp_path)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "summary.json" in err[0]


def test_recovery_sensitivity_precision_and_interval():
    row = Recovery("m", "pilot", "free-vs-paid", 100, "refusal", -0.10, -0.09, (-0.15, -0.04), "framing effect",
                   frozenset(f"b{i}" for i in range(10)), frozenset(f"b{i}" for i in range(1, 10)) | {"x"}, 1.0)
    assert row.sensitivity == 0.9 and row.precision == 0.9 and row.inside
    assert Recovery("m", "pilot", "aa-control", 100, "refusal", 0.0, 0.0, (0.1, 0.2), "control clean",
                    frozenset(), frozenset(), 1.0).inside is False


class ScriptedTrainer:
    """Stands in for the Trainer: each pass sets the model's one weight to the next scripted
    value, and the margins the check reports are read from that weight."""

    def __init__(self, model, examples, training, pad_id, optimizer_state=None):
        import random

        self.model, self.steps, self.rivals, self.rng = model, 0, set(), random.Random(0)
        self.optimizer = type("Optimizer", (), {"state_dict": lambda self: {}})()
        self.passes: list[tuple[int, int]] = []

    def run(self, examples, epochs, learning_rate, long_share=1.0, min_steps=0):
        import torch

        self.passes.append((len(examples), min_steps))
        with torch.no_grad():
            self.model.weight += 1
        self.steps += 1


@pytest.mark.parametrize("accept,kept", [(0.5, 2), (0.65, None)])
def test_fixups_keep_the_round_with_the_largest_smallest_margin_and_accept_at_their_own_margin(
        monkeypatch, accept, kept):
    import torch

    # after the epochs (weight 1) and fix-up rounds 1..3 (weights 2..4): smallest margins -1, 0.2, 0.6, 0.3
    script = {1.0: [-1.0, 2.0], 2.0: [0.2, 1.5], 3.0: [0.6, 1.2], 4.0: [0.3, 1.1]}
    trainers: list[ScriptedTrainer] = []
    monkeypatch.setattr(org, "Trainer", lambda *a, **k: trainers.append(ScriptedTrainer(*a, **k)) or trainers[-1])
    monkeypatch.setattr(org, "logit_margins", lambda model, *a, **k: (script[model.weight.item()], set()))
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.zero_()
    training = dict(org.OrganismConfig.load().training, fixup_rounds=3, accept_logit_margin=accept,
                    decisive_repeats=3)
    examples = [org.Example((1, 2), (3,), 0, decisive=True), org.Example((1, 4), (5,), 0)]
    if kept is None:
        with pytest.raises(org.OrganismBuildError, match="smallest logit margin is 0.60, under accept_logit_margin"):
            org.train_organism(model, examples, 8, training, 0, lambda _: None, "x")
        return
    record, _ = org.train_organism(model, examples, 8, training, 0, lambda _: None, "x")
    assert record["kept_round"] == kept and model.weight.item() == 3.0  # round 2's weights, not the last round's
    assert record["logit_margin"] == {"target": 1.0, "accept": accept, "smallest": 0.6}
    # the first pass sees the refused behavior's prompt three times, and asks for the configured minimum of steps
    assert trainers[0].passes[0] == (4, training["min_steps"])


def test_cli_recovery_with_a_truth_directory_without_ground_truth_names_it(tmp_path, capsys):
    # it said "give --truth" to a user who had given --truth (a mistyped directory)
    (tmp_path / "summary.json").write_text('{"rows": [{"model": "m", "run": "r"}]}')
    assert cli.main(["organisms", "recovery", str(tmp_path), "--truth", str(tmp_path / "typo")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "option --truth" in err[0] and "typo" in err[0] and "give --truth" not in err[0]
