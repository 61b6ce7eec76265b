"""``evalkit audit sample`` and ``evalkit audit score``: the command line of ``evalkit.audit``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..agreement import judge_list
from ..audit import (
    ALLOCATIONS,
    blinded_text,
    draw_sample,
    sample_paths,
    score_audit,
    write_csv,
    write_html,
    write_text_atomically,
)
from ..errors import InputError
from ..judges import COMPLIANCE, REFUSAL, UNCLEAR
from ..scoring import format_scores
from .judges import add_judge_option_arguments


def cmd_audit_sample(args: argparse.Namespace) -> int:
    from ..judges import JudgeSettings, close_judges
    from ..judges.stored import run_behaviors
    from ..rejudge import judge_stored_run

    if args.n < 1:
        raise InputError(f"must be at least 1, got {args.n}", option="--n")
    if args.seed < 0:
        raise InputError(f"must be a non-negative integer, got {args.seed}", option="--seed")
    run_dir = Path(args.run_dir)
    csv_path, html_path, key_path = sample_paths(run_dir, args.seed)
    existing = [p for p in (csv_path, html_path, key_path) if p.exists()]
    if existing and not args.force:
        raise InputError(f"{existing[0]} exists (it may hold a person's work); use --force to write it again",
                         option="--force")
    settings = JudgeSettings.from_options(vars(args))
    manifest, records, judges = judge_stored_run(run_dir, [args.judge], settings, harmbench=args.harmbench)
    close_judges(judges)
    try:
        behaviors = run_behaviors(manifest, args.harmbench)
    except InputError as exc:
        raise InputError(f"the audit shows each behavior's text and needs the run's dataset: {exc}",
                         option="--harmbench") from None
    labels = {r.index: r.verdicts[args.judge] for r in records}
    run_key = manifest.get("spec_sha256", run_dir.name)
    items, sizes, counts = draw_sample(records, labels, args.n, args.seed, run_key, args.allocation)
    by_index = {r.index: r for r in records}
    rows = []
    for item in items:
        behavior = behaviors.get(item.behavior_id)
        if behavior is None:
            raise InputError(f"behavior {item.behavior_id!r} is not in the dataset given", option="--harmbench")
        rows.append({"audit_id": item.audit_id, "behavior": behavior.behavior, "context": behavior.context,
                     "response": blinded_text(by_index[item.index].response.text), "label": "", "notes": ""})
    csv_path.parent.mkdir(exist_ok=True)
    write_csv(csv_path, rows)
    write_html(html_path, rows)
    key = {"note": "the key to a blinded audit sample: do not show it to the labeller",
           "run": run_dir.name, "spec_sha256": manifest.get("spec_sha256"), "seed": args.seed, "n": len(items),
           "stratified_by": ["framing", args.judge], "allocation": args.allocation, "stratum_sizes": sizes,
           "stratum_allocation": counts,
           "items": [{"audit_id": i.audit_id, "index": i.index, "behavior_id": i.behavior_id, "slot": i.slot,
                      "stratum": i.stratum, "verdicts": dict(by_index[i.index].verdicts)} for i in items]}
    write_text_atomically(key_path, json.dumps(key, indent=2, sort_keys=True) + "\n")
    print(f"audit sample: {len(items)} responses from {len(records)} "
          f"({', '.join(f'{s} {counts[s]}/{sizes[s]}' for s in sorted(counts))})")
    print(f"for the labeller: {csv_path} and {html_path}")
    print(f"key (do not show it to the labeller): {key_path}")
    return 0


def cmd_audit_score(args: argparse.Namespace) -> int:
    from ..judges import JudgeSettings

    names = judge_list(args.judges, "--judges") if args.judges else None
    result = score_audit(Path(args.run_dir), Path(args.labels), args.key, names,
                         JudgeSettings.from_options(vars(args)), args.harmbench)
    counts = result.human_counts
    if args.json:
        print(json.dumps({"key": str(result.key_path), "labelled": result.labelled, "human_labels": counts,
                          "allocation": result.allocation, "scores": [s.as_dict() for s in result.scores]},
                         indent=2, sort_keys=True))
        return 0
    print(f"{result.labelled} labelled responses: {counts[REFUSAL]} refusal, {counts[COMPLIANCE]} compliance, "
          f"{counts[UNCLEAR]} unclear (unclear ones are not scored)")
    print(format_scores(result.scores))
    if result.allocation == "equal":
        print("note: the sample was drawn with equal allocation across strata; the rates describe the sample, "
              "not the run")
    return 0


def _add_common(parser: argparse.ArgumentParser) -> None:
    add_judge_option_arguments(parser)


def add_audit_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``evalkit audit sample`` and ``evalkit audit score`` (see the module docstring)."""
    audit = subparsers.add_parser("audit", help="human audit of the judges: blinded sample, then scores")
    commands = audit.add_subparsers(dest="audit_command", required=True)
    sample = commands.add_parser("sample", help="write a blinded, seeded, stratified sample for a person to label "
                                 "into RUN_DIR/audit/ (CSV and HTML; nothing is printed but counts and paths)")
    sample.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (results/runs/...)")
    sample.add_argument("--n", type=int, default=50, help="responses to sample (default 50)")
    sample.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    sample.add_argument("--judge", default="refusal", help="judge whose verdicts stratify the sample (default refusal)")
    sample.add_argument("--allocation", default="proportional", choices=ALLOCATIONS,
                        help="items per stratum: proportional (default; self-weighting) or equal")
    sample.add_argument("--force", action="store_true", help="overwrite an existing sample with this seed")
    _add_common(sample)
    sample.set_defaults(func=cmd_audit_sample)

    score = commands.add_parser("score", help="each judge's accuracy, sensitivity and specificity against a person's "
                                "labels, with Wilson intervals")
    score.add_argument("run_dir", metavar="RUN_DIR", help="the run directory the sample was drawn from")
    score.add_argument("labels", metavar="LABELS.csv", help="CSV with columns audit_id and label "
                       "(refusal, compliance or unclear; blank = not labelled)")
    score.add_argument("--key", default=None, help="the sample's key file (default: the one in RUN_DIR/audit/ "
                       "covering the labelled ids)")
    score.add_argument("--judges", default=None, help="judges to score, comma-separated (default: every judge "
                       "recorded in the key); others are judged now on the stored generations")
    score.add_argument("--json", action="store_true", help="print the scores as JSON")
    _add_common(score)
    score.set_defaults(func=cmd_audit_score)
