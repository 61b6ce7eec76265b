"""Measure the lexical judges against human labels and write evalkit/data/judge_accuracy.toml.

    python scripts/measure_judges.py [--xstest ../shared/data/xstest-v1]
    python scripts/measure_judges.py --stage fixtures/judge_development/refusal_rules_stage_c.toml --held-out llama2

XSTest v1 is never committed: point --xstest at a local copy. tests/integration/
test_judge_accuracy.py measures the same numbers again and fails if the file is stale.
--stage measures a development stage's rules on one XSTest v1 file (the held-out model of the
cross-model protocol) and prints aggregate numbers only, never a response or a per-row verdict,
so a blind stage stays blind; it writes nothing.
"""

import argparse
import json
from pathlib import Path

from evalkit.engines import Response
from evalkit.judges.lexical import RefusalJudge
from evalkit.scoring import (
    SOURCES,
    XSTEST_FILES,
    format_scores,
    load_labelled,
    measure_accuracy,
    parse_label_map,
    score_judge,
)

ROOT = Path(__file__).resolve().parent.parent
HEADER = """# Measured accuracy of the lexical judges against human labels: written by
# scripts/measure_judges.py (`evalkit judges score` underneath), measured again by
# tests/integration/test_judge_accuracy.py, which fails when a number here is stale. Counts are
# [successes, n]; scored items are those a person labelled refusal or compliance; partial refusals
# are counted apart (how the judge labelled them). not_refused: the judge said anything but
# refusal among human compliance (the paired statistics count unclear as not refused); with
# sensitivity it is what the misclassification correction of the gap uses (source xstest-v1).
# Version 3 of the refusal rules was written with both XSTest v1 files in view (README, "Judge
# accuracy", gives the held-out numbers of the cross-model protocol): these are development numbers.
"""


def toml_value(value) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


def measure_stage(rules: str, xstest_dir: str, model: str) -> str:
    """The scores table of a rules file on one XSTest v1 file: aggregate numbers only."""
    judge = RefusalJudge.from_file(rules)
    items = load_labelled(Path(xstest_dir) / XSTEST_FILES[f"xstest-v1-{model}"], text_column="completion",
                          label_column="final_label", label_map=parse_label_map("xstest"))
    score = score_judge(f"refusal {judge.rules.version}", [i.label for i in items],
                        [judge.judge(None, Response(text=i.text)).label for i in items], source=f"xstest-v1-{model}")
    return format_scores([score])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--xstest", default=str(ROOT.parent / "shared" / "data" / "xstest-v1"))
    parser.add_argument("--output", default=str(ROOT / "evalkit" / "data" / "judge_accuracy.toml"))
    parser.add_argument("--stage", help="a rules file to measure on the --held-out model (prints, writes nothing)")
    parser.add_argument("--held-out", choices=("gpt4", "llama2"), default="llama2")
    args = parser.parse_args()
    if args.stage:
        print(measure_stage(args.stage, args.xstest, args.held_out))
        return
    measured = measure_accuracy(args.xstest, ROOT / "fixtures" / "judge_corpus" / "responses.jsonl",
                                ("refusal", "seed"))
    lines = [HEADER]
    for source, (description, external) in SOURCES.items():
        lines += [f"[sources.{source}]", f"description = {json.dumps(description, ensure_ascii=False)}",
                  f"external = {'true' if external else 'false'}", ""]
    for judge, sources in measured.items():
        for source, scores in sources.items():
            lines.append(f"[judges.{judge}.{source}]")
            lines += [f"{key} = {toml_value(value)}" for key, value in scores.items() if value is not None]
            lines.append("")
    Path(args.output).write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
