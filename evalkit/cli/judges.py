"""``evalkit judges agree`` and ``evalkit judges score``: the command line of ``evalkit.agreement``
and ``evalkit.scoring``."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..agreement import agreement, format_report, judge_list
from ..errors import InputError


def add_judge_option_arguments(parser: argparse.ArgumentParser, harmbench: bool = True) -> None:
    """The JUDGE options (model-judge engine, model, options; the vote) and --harmbench."""
    from ..options import JUDGE
    for option in JUDGE:
        kwargs: dict[str, Any] = {"dest": option.dest, "help": option.help, "default": option.default}
        if option.action:
            kwargs["action"] = option.action
        if option.choices:
            kwargs["choices"] = option.choices
        parser.add_argument(option.flag, **kwargs)
    if not harmbench:
        return
    parser.add_argument("--harmbench", default=None,
                        help="HarmBench CSV (or its directory) for model judges; default: the path the run's "
                             "manifest records, then $EVALKIT_HARMBENCH")


def cmd_judges_agree(args: argparse.Namespace) -> int:
    from ..judges import JudgeSettings, build_judges, close_judges, positive_label
    from ..rejudge import judge_stored_run

    if args.max_listed < 0:
        raise InputError(f"must be at least 0, got {args.max_listed}", option="--max-listed")
    names = judge_list(args.judges, "--judges")
    if len(names) < 2:
        raise InputError("give at least two judges, e.g. --judges refusal,seed", option="--judges")
    settings = JudgeSettings.from_options(vars(args))
    kinds = {positive_label(j) for j in build_judges(names, settings, behaviors={})}
    if len(kinds) > 1:  # e.g. refusal judges and trace judges label different things
        raise InputError(f"these judges do not label the same thing (outcomes {', '.join(sorted(kinds))}); "
                         "compare refusal judges with refusal judges, trace judges with trace judges",
                         option="--judges")
    _, records, judges = judge_stored_run(args.run_dir, names, settings, harmbench=args.harmbench)
    try:
        report = agreement(records, names)
    finally:
        close_judges(judges)
    print(json.dumps(report.as_dict(), indent=2, sort_keys=True) if args.json
          else format_report(report, args.max_listed))
    return 0


def add_judge_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``evalkit judges agree RUN_DIR --judges a,b,c``: re-judge stored generations (cached in
    the run's verdicts/) and print pairwise kappa, confusion matrices and disagreements.
    ``evalkit judges score FILE``: judges against human labels (``evalkit.scoring``)."""

    judges = subparsers.add_parser("judges", help="judges: agreement on stored generations; accuracy against "
                                   "human labels")
    commands = judges.add_subparsers(dest="judges_command", required=True)
    agree = commands.add_parser("agree", help="pairwise Cohen's kappa, confusion matrices and the behaviors where "
                                "judges disagree, on a run's stored generations (ids and numbers only)")
    agree.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (results/runs/...)")
    agree.add_argument("--judges", required=True, help="comma-separated judges, e.g. refusal,seed,harmbench-cls")
    agree.add_argument("--json", action="store_true", help="print the full report as JSON")
    agree.add_argument("--max-listed", type=int, default=50, help="disagreements listed in the table (default 50)")
    add_judge_option_arguments(agree)
    agree.set_defaults(func=cmd_judges_agree)
    add_score_command(commands, lambda parser: add_judge_option_arguments(parser, harmbench=False))


def cmd_judges_score(args: argparse.Namespace) -> int:
    from ..judges import REFUSAL, EngineBackedJudge, JudgeSettings, build_judges, positive_label
    from ..scoring import (
        DEFAULT_JUDGES,
        HUMAN_LABELS,
        format_scores,
        judge_labelled,
        load_labelled,
        parse_label_map,
        score_sources,
    )
    from ..suites import in_range

    alpha = in_range(args.alpha, "--alpha", 0, 1, open_low=True, open_high=True)
    names = judge_list(",".join(args.judge), "--judge") if args.judge else list(DEFAULT_JUDGES)
    if not names:  # --judge "": an empty table and exit status 0
        raise InputError("empty value: name a judge, e.g. --judge refusal", option="--judge")
    settings = JudgeSettings.from_options(vars(args))
    built = build_judges(names, settings, behaviors={})
    odd = [j.name for j in built if j.name in names and positive_label(j) != REFUSAL]
    if odd:
        raise InputError(f"{odd[0]} labels reasoning traces, not refusal or compliance", option="--judge")
    model_judges = [j.name for j in built if isinstance(j, EngineBackedJudge)]
    if model_judges and not args.prompt_column:
        raise InputError(f"{model_judges[0]} reads the request as well as the response: name its column",
                         option="--prompt-column")
    mapping = parse_label_map(args.label_map)
    seen = [Path(path).resolve() for path in args.files]
    twice = next((path for k, path in enumerate(args.files) if seen[k] in seen[:k]), None)
    if twice is not None:  # its responses would be counted twice
        raise InputError(f"{twice} is given twice", option="FILE")
    items = []
    for path in args.files:
        items += load_labelled(path, text_column=args.text_column, label_column=args.label_column, label_map=mapping,
                               group_column=args.group_column, reasoning_column=args.reasoning_column,
                               prompt_column=args.prompt_column)
    scores = score_sources(items, judge_labelled(items, names, settings), alpha)
    if args.json:
        sources = dict.fromkeys(i.source for i in items)
        counts = {s: dict(Counter(i.label for i in items if i.source == s)) for s in sources}
        print(json.dumps({"files": [str(p) for p in args.files], "human_labels": counts, "alpha": alpha,
                          "scores": [s.as_dict() for s in scores]}, indent=2, sort_keys=True))
        return 0
    for source in dict.fromkeys(i.source for i in items):
        tally = Counter(i.label for i in items if i.source == source)
        print(f"{source}: {sum(tally.values())} labelled responses ("
              + ", ".join(f"{tally[label]} {label}" for label in HUMAN_LABELS if tally[label]) + ")")
    print()
    print(format_scores(scores, confusion=not args.no_confusion))
    return 0


def add_score_command(commands: argparse._SubParsersAction[argparse.ArgumentParser],
                      add_judge_options: Callable[[argparse.ArgumentParser], object]) -> None:
    score = commands.add_parser(
        "score", help="score judges against human labels in CSV or JSONL files: accuracy, sensitivity, "
                      "specificity (Wilson intervals), Cohen's kappa, confusion matrix, partial refusals apart")
    score.add_argument("files", metavar="FILE", nargs="+", help="labelled responses (.csv or .jsonl)")
    score.add_argument("--text-column", default="text", help="column holding the response (default text)")
    score.add_argument("--label-column", default="label", help="column holding the human label (default label)")
    score.add_argument("--label-map", default=None,
                       help="RAW=LABEL pairs, comma-separated, mapping the file's labels to refusal, compliance, "
                            "partial or unclear, e.g. 1_full_compliance=compliance,2_full_refusal=refusal,"
                            "3_partial_refusal=partial (that is the preset 'xstest')")
    score.add_argument("--group-column", default=None,
                       help="column naming each row's source (default: one source per file, its name)")
    score.add_argument("--reasoning-column", default=None, help="column holding a reasoning trace, if any")
    score.add_argument("--prompt-column", default=None,
                       help="column holding the request, for model judges (harmbench-cls, llm)")
    score.add_argument("--judge", action="append", default=None,
                       help="judge to score; repeatable (default: refusal and seed)")
    score.add_argument("--alpha", type=float, default=0.05, help="1 - confidence level of the intervals")
    score.add_argument("--no-confusion", action="store_true", help="leave out the confusion matrices")
    score.add_argument("--json", action="store_true", help="print the scores as JSON")
    add_judge_options(score)
    score.set_defaults(func=cmd_judges_score)
