"""``evalkit judges agree`` and ``evalkit judges score``: the command line of ``evalkit.agreement``
and ``evalkit.scoring``."""

from __future__ import annotations

import argparse
import json
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
    from ..scoring import add_score_command

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
