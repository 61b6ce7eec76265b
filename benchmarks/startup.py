"""Start-up cost of the commands a user types most, as ratios against `python -c pass`.

A CI job, a pre-commit hook or a shell completion pays the start-up of every `evalkit`
call and of `pytest --help`; the statistics themselves take milliseconds. Each command
runs ``--repeat`` times in fresh interpreters and the median wall time is reported, next
to evalkit's own import time from ``python -X importtime`` (the cumulative time of the
top-level ``evalkit...`` modules the command imports, in milliseconds).

    python benchmarks/startup.py --repeat 5 [--json] [--source DIR]

``--source DIR`` measures the evalkit checkout in DIR instead of the installed one (e.g. the
main branch's worktree, for a before/after comparison in one run).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# (label, python arguments): each runs as `python ARGS`, from an empty directory so no
# conftest or pytest.ini of this repository is involved in `pytest --help`.
COMMANDS = (
    ("python -c pass", None, "pass"),
    ("evalkit --help", "evalkit.cli", ["--help"]),
    ("evalkit stats paired", "evalkit.cli", ["stats", "paired", "--table", "16,20,7,157", "--json"]),
    ("evalkit stats crossover", "evalkit.cli", ["stats", "crossover", "--free-first", "10,3,2,85",
                                                "--paid-first", "12,1,4,83"]),
    ("pytest --help", "pytest", ["--help"]),
)
# What each command imports of evalkit (its own import time, not the command's work; pytest's
# own import is done first so that it is not counted as evalkit's).
IMPORTS = (
    ("evalkit --help", "import evalkit.cli"),
    ("pytest --help", "import pytest; import evalkit.pytest_plugin.core"),
)


def _prelude(source: str | None) -> str:
    """Python that makes DIR's evalkit win over the installed (editable) one."""
    if source is None:
        return "import sys"
    return ("import sys; sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in type(f).__module__ "
            f"and 'editable' not in getattr(f, '__name__', '')]; sys.path.insert(0, {source!r})")


def command_args(module: str | None, args, source: str | None) -> list[str]:
    if module is None:
        return ["-c", args]
    # run the module as `python -m` would, after the prelude
    return ["-c", f"{_prelude(source)}; import runpy; sys.argv = [{module!r}, *{list(args)!r}]; "
                  f"runpy.run_module({module!r}, run_name='__main__', alter_sys=True)"]
HEAVY = ("scipy.stats", "scipy.optimize", "pandas")


def wall_time(args: list[str], cwd: str, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run([sys.executable, *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def import_profile(statement: str, cwd: str, repeat: int, source: str | None = None) -> dict:
    """evalkit's own cumulative import time (ms, median) and which heavy modules it pulls in."""
    totals, heavy = [], set()
    line = re.compile(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)")
    for _ in range(repeat):
        out = subprocess.run([sys.executable, "-X", "importtime", "-c", f"{_prelude(source)}; {statement}"],
                             cwd=cwd, check=True, capture_output=True, text=True).stderr
        total = 0
        for match in map(line.search, out.splitlines()):
            if not match:
                continue
            cumulative, indent, module = int(match.group(1)), len(match.group(2)), match.group(3)
            if module.startswith("evalkit") and indent == 1:  # top-level evalkit imports only
                total += cumulative
            heavy.update(h for h in HEAVY if module == h or module.startswith(h + "."))
        totals.append(total / 1000.0)
    return {"evalkit_import_ms": round(statistics.median(totals), 1), "heavy_modules": sorted(heavy)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--source", default=None, help="an evalkit checkout to measure instead of the installed one")
    args = parser.parse_args()
    source = str(Path(args.source).resolve()) if args.source else None
    with tempfile.TemporaryDirectory() as empty:
        results = {label: {"seconds": round(wall_time(command_args(module, cmd, source), empty, args.repeat), 3)}
                   for label, module, cmd in COMMANDS}
        baseline = results["python -c pass"]["seconds"]
        for result in results.values():
            result["ratio_vs_python"] = round(result["seconds"] / baseline, 2)
        for label, statement in IMPORTS:
            results[label].update(import_profile(statement, empty, args.repeat, source))
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{source or 'installed evalkit'}: median of {args.repeat} runs each; ratio = wall time / `python -c pass`")
    print(f"{'command':<26}{'seconds':>9}{'ratio':>8}{'evalkit import ms':>19}  heavy modules imported")
    for label, result in results.items():
        own = result.get("evalkit_import_ms")
        print(f"{label:<26}{result['seconds']:>9.3f}{result['ratio_vs_python']:>8.2f}"
              f"{'' if own is None else f'{own:.0f}':>19}  {', '.join(result.get('heavy_modules', [])) or ''}")


if __name__ == "__main__":
    main()
