"""A screenshot of a results directory's HTML report, as README shows it (docs/report.png).

The report is drawn by the same code as `evalkit report` and loaded in headless Chromium by the
same client as the browser tests (evalkit.testing.chromium); the PNG is the top of the page (the
summary table, its legend and the forest plot), 1280 pixels wide.

    EVALKIT_HARMBENCH=../shared/data/harmbench pytest --results-dir=results/study   # exits 1 on purpose
    python scripts/report_screenshot.py results/study docs/report.png
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from evalkit.html_report import load_report, write_report
from evalkit.testing.chromium import Chromium


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results_dir")
    parser.add_argument("output", help="the PNG to write")
    parser.add_argument("--baseline", default=None, help="a baseline results directory (the compare view)")
    parser.add_argument("--height", type=int, default=1300, help="pixels from the top of the page (0: all of it)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        page_path = write_report(load_report(args.results_dir, baseline=args.baseline), Path(tmp) / "report.html")
        with Chromium() as browser:
            page = browser.open(page_path)
            if page.load.console_errors or len(page.load.requests) != 1:
                print(f"the report did not load cleanly: {page.load.console_errors} {page.load.requests}",
                      file=sys.stderr)
                return 1
            page.screenshot(args.output, height=args.height or None)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
