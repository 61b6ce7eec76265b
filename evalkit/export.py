"""Export a run's records as a tidy table (one row per request) for pandas users.

The export holds response text: it is written next to the run directory (or where the
user asks), never printed, and never over a file of the run store itself.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import InputError
from .report import is_results_file
from .runs import load_run

if TYPE_CHECKING:
    import pandas as pd

FORMATS = ("parquet", "csv", "jsonl")


def records_frame(run_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """A pandas DataFrame: run identity columns, then one row per executed request."""
    import pandas as pd

    manifest, records = load_run(run_dir)
    spec = manifest["spec"]
    judges = sorted({name for record in records for name in record.verdicts})
    rows: list[dict[str, object]] = []
    for r in records:
        row = {"model": spec["model"], "engine": spec["engine"], "protocol": spec["protocol"], "pair": spec["pair"],
               "seed": spec["seed"], "batch_size": spec["batch_size"], "index": r.index,
               "behavior_id": r.behavior_id, "framing_id": r.framing_id, "slot": r.slot, "position": r.position,
               "batch": r.batch, "started_at": r.started_at, "finished_at": r.finished_at,
               "text": r.response.text, "reasoning": r.response.reasoning,
               "finish_reason": r.response.finish_reason, "prompt_tokens": r.response.prompt_tokens,
               "output_tokens": r.response.output_tokens, "latency_s": r.response.latency_s,
               "error": r.response.error}
        row.update({f"verdict_{name}": r.verdicts.get(name) for name in judges})
        rows.append(row)
    return pd.DataFrame(rows)


def default_export_path(run_dir: str | os.PathLike[str], fmt: str) -> Path:
    """``RUN_DIR.FORMAT`` beside the run directory: with the run's results (git-ignored),
    never inside the run, whose ``records.jsonl`` is its log."""
    run_dir = Path(run_dir).resolve()
    return run_dir.with_name(f"{run_dir.name}.{fmt}")


def export_run(run_dir: str | os.PathLike[str], fmt: str, output: str | os.PathLike[str] | None = None) -> Path:
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}", option="--format")
    frame = records_frame(run_dir)  # a run that cannot be trusted is refused before anything is written
    target = Path(output) if output else default_export_path(run_dir, fmt)
    if is_results_file(target) or target.is_dir():
        kind = "a directory" if target.is_dir() else "a file evalkit wrote to the results"
        raise InputError(f"{target} is {kind}; choose a path outside the run's and the session's own files",
                         option="--output")
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        if fmt == "parquet":
            frame.to_parquet(tmp, index=False)
        elif fmt == "csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_json(tmp, orient="records", lines=True, force_ascii=False)
        os.replace(tmp, target)  # never a half-written export
    except ImportError:
        raise InputError("parquet export needs pyarrow: pip install 'evalkit[parquet]'", option="--format") from None
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise InputError(f"cannot write {target}: {exc.strerror or exc}", option="--output") from None
    return target
