"""Third-party engines and judges by entry point (``evalkit.engines``, ``evalkit.judges``).

A tiny package is installed into a temporary site directory exactly as an installer lays it
out (its module and a ``.dist-info`` with METADATA and entry_points.txt; building a wheel
needs the ``wheel`` package, which this offline machine lacks) that the subprocesses put on
PYTHONPATH; then `evalkit run` and `pytest` run the suite on its engine and judge, which
evalkit itself knows nothing about.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

ENTRY_POINTS = """\
[evalkit.engines]
coin = evalkit_coin_plugin:CoinEngine

[evalkit.judges]
shout = evalkit_coin_plugin:ShoutJudge
"""

MODULE = '''\
"""An engine that refuses a behavior when its id hashes odd (so no framing effect at all),
answering in capitals; and a judge that calls an all-capitals answer a refusal."""
import hashlib

from evalkit.engines import BaseEngine, Response
from evalkit.judges import COMPLIANCE, REFUSAL, Verdict, unjudgeable


class CoinEngine(BaseEngine):
    name = "coin"

    def __init__(self, config):
        self.model = config.model

    def generate(self, requests):
        out = []
        for request in requests:
            odd = hashlib.sha256((self.model + request.behavior_id).encode()).digest()[0] % 2
            out.append(Response(text="NO, I WILL NOT HELP." if odd else "Here is a placeholder answer.",
                                finish_reason="stop"))
        return out

    def describe(self):
        return {"engine": "coin", "model": self.model}

    def close(self):
        pass


class ShoutJudge:
    name = "shout"

    def judge(self, request, response):
        unusable = unjudgeable(response, self.name)
        if unusable is not None:
            return unusable
        return Verdict(REFUSAL if response.text.isupper() else COMPLIANCE, self.name, "capitals")

    def describe(self):
        return {"judge": "shout", "version": 1}
'''


def install(site, name, entry_points, modules=None):
    """Lay out an installed distribution: its modules and ``NAME-0.1.dist-info``."""
    info = site / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)
    for module, text in (modules or {}).items():
        (site / f"{module}.py").write_text(text)
    return site


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory):
    return install(tmp_path_factory.mktemp("plugin") / "site", "evalkit-coin-plugin", ENTRY_POINTS,
                   {"evalkit_coin_plugin": MODULE})


def run(args, site, cwd=ROOT, **env):
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p),
                **env}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=600)


def test_names_list_plugins_without_importing_them(plugin_site):
    code = ("import sys; from evalkit.engines import engine_names; from evalkit.judges import judge_names\n"
            "print(engine_names(), judge_names(), 'evalkit_coin_plugin' in sys.modules)")
    out = run(["-c", code], plugin_site)
    assert out.returncode == 0, out.stderr
    assert "'coin'" in out.stdout and "'shout'" in out.stdout and out.stdout.rstrip().endswith("False")
    without = run(["-c", code], "")  # not installed: not listed
    assert "'coin'" not in without.stdout and "'shout'" not in without.stdout


def test_evalkit_run_on_a_plugin_engine_and_judge(plugin_site, harmbench_csv, tmp_path):
    results = tmp_path / "results"
    out = run(["-m", "evalkit.cli", "run", "--engine", "coin", "--model", "m1", "--judge", "shout", "--protocol",
               "randomized", "--n", "60", "--results-dir", str(results), "--harmbench", str(harmbench_csv),
               "--pair", "free-vs-paid"], plugin_site)
    assert out.returncode == 0, out.stdout + out.stderr
    [run_dir] = [p for p in (results / "runs").iterdir() if p.is_dir()]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["spec"]["engine"] == "coin" and "shout" in manifest["judges"]
    records = [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines()]
    labels = {r["verdicts"]["shout"] for r in records}
    assert labels == {"refusal", "compliance"}  # the plugin judge decided, both ways
    row = json.loads((results / "summary.json").read_text())["rows"][0]
    assert row["n"] == 60 and row["b"] == row["c"] == 0  # the coin engine has no framing effect


def test_pytest_suite_on_a_plugin_engine_and_judge(plugin_site, harmbench_csv, tmp_path):
    out = run(["-m", "pytest", "-p", "no:cacheprovider", "tests/behavioral/test_paired_framing.py", "-v", "-m",
               "replication", "--engine", "coin", "--model", "m1", "--judge", "shout", "--n", "60",
               f"--results-dir={tmp_path / 'results'}", f"--harmbench={harmbench_csv}"], plugin_site)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert re.search(r"\b1[01] passed", out.stdout) and not re.search(r"\d+ failed", out.stdout)
    assert "[m1-replication-free-vs-paid] PASSED" in out.stdout


def test_a_broken_plugin_is_a_one_line_error(tmp_path, harmbench_csv):
    site = install(tmp_path / "site", "evalkit-broken", "[evalkit.engines]\nbroken = evalkit_missing_module:Engine\n")
    out = run(["-m", "evalkit.cli", "run", "--engine", "broken", "--n", "10", "--harmbench", str(harmbench_csv),
               "--results-dir", str(tmp_path / "results")], site)
    assert out.returncode == 2 and out.stdout == ""
    [line] = out.stderr.strip().splitlines()
    assert "--engine" in line and "'broken'" in line and "evalkit-broken" in line and "ModuleNotFoundError" in line
    assert not (tmp_path / "results").exists()


def test_a_builtin_name_wins_over_a_plugin(tmp_path):
    site = install(tmp_path / "site", "evalkit-shadow", "[evalkit.engines]\nsim = evalkit_missing_module:Engine\n"
                   "[evalkit.judges]\nrefusal = evalkit_missing_module:Judge\n")
    code = ("from evalkit.engines import engine_factory; from evalkit.judges import judge_factory\n"
            "print(engine_factory('sim').__name__, judge_factory('refusal').__name__)")
    out = run(["-c", code], site)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["SimEngine", "RefusalJudge"]
