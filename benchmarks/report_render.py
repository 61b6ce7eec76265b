"""Size and render time of the HTML report of a results directory (the default session's, for the
issue note), with the phases in one run and as ratios against `evalkit --help` (start-up).

    EVALKIT_HARMBENCH=../shared/data/harmbench pytest --results-dir=results/study   # exits 1 on purpose
    python benchmarks/report_render.py results/study --repeat 3 [--json]

Measured: `evalkit report` as a user runs it (a fresh process: start-up, matplotlib's import,
reading summary.json and the manifests, drawing, writing), the in-process phases (read; figures
drawn and serialised to SVG; the whole render, figures included), the file's size and its figures, and the time headless
Chromium takes from navigation to the load event (where one is installed). Medians of --repeat.
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


def _median_seconds(command: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results_dir")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from evalkit import figures, html_report

    with tempfile.TemporaryDirectory() as tmp:
        output = Path(tmp) / "report.html"
        cli = [sys.executable, "-m", "evalkit.cli"]
        startup = _median_seconds(cli + ["--help"], args.repeat)
        command = _median_seconds(cli + ["report", args.results_dir, "-o", str(output)], args.repeat)
        phases = {"read": [], "figures": [], "whole_render": []}
        cpu = []  # CPU seconds of the whole render: less sensitive than wall time to a shared machine
        for _ in range(args.repeat):
            started = time.perf_counter()
            data = html_report.load_report(args.results_dir)
            read = time.perf_counter()
            drawn = [figures.svg(f) for f in figures.session_figures(data.summary, data.meta)]
            drew = time.perf_counter()
            cpu_started = time.process_time()
            html_report.render(data)  # the figures again, and the document around them
            cpu.append(time.process_time() - cpu_started)
            phases["read"].append(read - started)
            phases["figures"].append(drew - read)
            phases["whole_render"].append(time.perf_counter() - drew)
        text = output.read_text(encoding="utf-8")
        result = {
            "results_dir": args.results_dir, "rows": len(data.summary), "figures": len(drawn),
            "size_bytes": len(text.encode("utf-8")), "svg_bytes": sum(len(s.encode("utf-8")) for s in drawn),
            "evalkit_report_s": round(command, 3), "evalkit_help_s": round(startup, 3),
            "report_over_help": round(command / startup, 2),
            **{f"{name}_s": round(statistics.median(values), 3) for name, values in phases.items()},
            "whole_render_cpu_s": round(statistics.median(cpu), 3), "load_average": round(os.getloadavg()[0], 1),
            "browser_load_s": None,
        }
        try:
            from evalkit.testing.chromium import Chromium, find_chromium

            if find_chromium():
                loads = []
                with Chromium() as browser:
                    for _ in range(args.repeat):
                        page = browser.open(output)
                        loads.append(page.load_seconds)
                        page.close()
                result["browser_load_s"] = round(statistics.median(loads), 3)
        except ImportError:
            pass
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:>20}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
