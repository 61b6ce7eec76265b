"""HarmBench text behaviors: loading, validation, selection and source resolution.

HarmBench text is never shipped in this package. A user points at a local copy
(``--harmbench PATH`` or ``EVALKIT_HARMBENCH``), or evalkit downloads the official
file pinned to one upstream commit, verifies its sha256 and caches it.
"""

from __future__ import annotations

import csv
import hashlib
import http.client
import io
import os
import random
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DatasetError

REQUIRED_COLUMNS = (
    "Behavior",
    "FunctionalCategory",
    "SemanticCategory",
    "Tags",
    "ContextString",
    "BehaviorID",
)
FUNCTIONAL_CATEGORIES = ("standard", "contextual", "copyright")

# The official file, pinned: the URL names one upstream commit and the checksum is
# the sha256 of that file (400 rows). A different file under the same name is refused.
HARMBENCH_FILENAME = "harmbench_behaviors_text_all.csv"
HARMBENCH_COMMIT = "8e1604d1171fe8a48d8febecd22f600e462bdcdd"
HARMBENCH_URL = (
    "https://raw.githubusercontent.com/centerforaisafety/HarmBench/"
    f"{HARMBENCH_COMMIT}/data/behavior_datasets/{HARMBENCH_FILENAME}"
)
HARMBENCH_SHA256 = "2745611872be3b2eab141e39bb328b8c1140dc3cd8d0a49da6174260d9ccbfb9"
ENV_PATH = "EVALKIT_HARMBENCH"
ENV_URL = "EVALKIT_HARMBENCH_URL"
ENV_CACHE = "EVALKIT_CACHE_DIR"


@dataclass(frozen=True)
class Behavior:
    """One HarmBench behavior. ``row`` is the 1-based data row in its file (header excluded)."""

    behavior_id: str
    behavior: str
    functional_category: str
    semantic_category: str
    tags: tuple[str, ...] = ()
    context: str = ""
    row: int = 0

    @property
    def request(self) -> str:
        """The request as HarmBench's direct-request baseline renders it: context first."""
        if self.context:
            return f"{self.context}\n\n---\n\n{self.behavior}"
        return self.behavior


@dataclass(frozen=True)
class Dataset:
    """Behaviors in file order, with the provenance the run manifest records."""

    behaviors: tuple[Behavior, ...]
    path: str
    sha256: str
    selection: str = "all"

    def __len__(self) -> int:
        return len(self.behaviors)

    def __iter__(self) -> Iterator[Behavior]:
        return iter(self.behaviors)

    def describe(self) -> dict[str, object]:
        return {"path": self.path, "sha256": self.sha256, "selection": self.selection,
                "n": len(self.behaviors)}


# ---------------------------------------------------------------- loading


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _decode(raw: bytes, path: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        # Name the row: count newlines before the bad byte (row 1 is the header line).
        line = raw[: exc.start].count(b"\n") + 1
        raise DatasetError(
            f"bytes at offset {exc.start} are not valid UTF-8 ({exc.reason})",
            file=path, row=line - 1 if line > 1 else None,
        ) from None


def load_behaviors(path: str | os.PathLike[str]) -> Dataset:
    """Load and validate a HarmBench behaviors CSV.

    Errors name the file, the 1-based data row and the column: a missing column,
    an empty Behavior or BehaviorID, a duplicate BehaviorID, a behavior text and context
    repeated under another id, an unknown functional
    category, a contextual behavior without context, or undecodable bytes.
    """
    path = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise DatasetError("file not found", file=path) from None
    except OSError as exc:
        raise DatasetError(f"cannot read file: {exc.strerror}", file=path) from None
    text = _decode(raw, path)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    twice = next((name for k, name in enumerate(header) if name in header[:k]), None)
    if twice is not None:
        raise DatasetError("the header names it twice", file=path, row=0, column=twice)
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    if missing:
        raise DatasetError(
            f"missing required column(s) {', '.join(missing)}; found {', '.join(header) or 'no header'}",
            file=path, row=0, column=missing[0],
        )
    behaviors: list[Behavior] = []
    seen: dict[str, int] = {}
    same_request: dict[tuple[str, str], int] = {}
    row_number = 0
    try:
        for row_number, row in enumerate(reader, start=1):
            if None in row or any(v is None for v in row.values()):
                raise DatasetError("wrong number of fields", file=path, row=row_number)
            behavior_id = row["BehaviorID"].strip()
            if not behavior_id:
                raise DatasetError("empty BehaviorID", file=path, row=row_number, column="BehaviorID")
            if not behavior_id.isprintable():
                # ids reach terminals, test ids and snapshot keys: no newline, escape or bidi control
                raise DatasetError(f"BehaviorID {behavior_id[:60]!r} contains a control or formatting character",
                                   file=path, row=row_number, column="BehaviorID")
            if behavior_id in seen:
                raise DatasetError(
                    f"duplicate BehaviorID {behavior_id!r} (first on row {seen[behavior_id]})",
                    file=path, row=row_number, column="BehaviorID",
                )
            seen[behavior_id] = row_number
            text_value = row["Behavior"].strip()
            if not text_value:
                raise DatasetError("empty behavior text", file=path, row=row_number, column="Behavior")
            functional = row["FunctionalCategory"].strip()
            if functional not in FUNCTIONAL_CATEGORIES:
                raise DatasetError(
                    f"unknown FunctionalCategory {functional!r}; expected one of {', '.join(FUNCTIONAL_CATEGORIES)}",
                    file=path, row=row_number, column="FunctionalCategory",
                )
            semantic = row["SemanticCategory"].strip()
            if not semantic:
                raise DatasetError("empty SemanticCategory", file=path, row=row_number, column="SemanticCategory")
            context = row["ContextString"].strip()
            if functional == "contextual" and not context:
                raise DatasetError("contextual behavior without ContextString", file=path,
                                   row=row_number, column="ContextString")
            if (text_value, context) in same_request:
                # the same request twice is one behavior counted twice: its pairs are not independent,
                # which every paired statistic assumes (and a wording-level effect would count double)
                raise DatasetError(f"the same Behavior and ContextString as row {same_request[text_value, context]}",
                                   file=path, row=row_number, column="Behavior")
            same_request[text_value, context] = row_number
            tags = tuple(t.strip() for t in row["Tags"].split(",") if t.strip())
            behaviors.append(Behavior(behavior_id, text_value, functional, semantic, tags, context, row_number))
    except csv.Error as exc:
        # the row being read when the parser failed: the one after the last row it returned
        raise DatasetError(f"malformed CSV: {exc}", file=path, row=row_number + 1) from None
    if not behaviors:
        raise DatasetError("no behaviors in file", file=path)
    return Dataset(tuple(behaviors), path=os.path.abspath(path), sha256=hashlib.sha256(raw).hexdigest())


# ---------------------------------------------------------------- selection


@dataclass(frozen=True)
class Selection:
    """Which behaviors to run: all, the first N, by category, or a seeded sample of N."""

    first: int | None = None
    sample: int | None = None
    functional: tuple[str, ...] = ()
    semantic: tuple[str, ...] = ()
    seed: int = 0
    ids: tuple[str, ...] = field(default=())

    def describe(self) -> str:
        parts = []
        if self.functional:
            parts.append("functional=" + "+".join(self.functional))
        if self.semantic:
            parts.append("semantic=" + "+".join(self.semantic))
        if self.ids:
            parts.append(f"ids={len(self.ids)}")
        if self.first is not None:
            parts.append(f"first={self.first}")
        if self.sample is not None:
            parts.append(f"sample={self.sample}@seed{self.seed}")
        return ",".join(parts) or "all"


def select(dataset: Dataset, selection: Selection) -> Dataset:
    """Apply a selection: category filters first, then first-N or a seeded sample (file order kept)."""
    chosen: Sequence[Behavior] = dataset.behaviors
    if selection.functional:
        unknown = set(selection.functional) - set(FUNCTIONAL_CATEGORIES)
        if unknown:
            raise DatasetError(f"unknown functional category {sorted(unknown)[0]!r}", file=dataset.path)
        chosen = [b for b in chosen if b.functional_category in selection.functional]
    if selection.semantic:
        present = {b.semantic_category for b in dataset.behaviors}
        unknown = set(selection.semantic) - present
        if unknown:
            raise DatasetError(
                f"unknown semantic category {sorted(unknown)[0]!r}; present: {', '.join(sorted(present))}",
                file=dataset.path)
        chosen = [b for b in chosen if b.semantic_category in selection.semantic]
    if selection.ids:
        wanted = set(selection.ids)
        known = {b.behavior_id for b in chosen}
        if wanted - known:
            raise DatasetError(f"unknown BehaviorID {sorted(wanted - known)[0]!r}", file=dataset.path)
        chosen = [b for b in chosen if b.behavior_id in wanted]
    if selection.first is not None:
        if selection.first < 1:
            raise DatasetError(f"--n must be at least 1, got {selection.first}", option="--n")
        if selection.first > len(chosen):
            raise DatasetError(
                f"asked for the first {selection.first} behaviors but the selection has {len(chosen)}",
                file=dataset.path, option="--n")
        chosen = list(chosen)[: selection.first]
    if selection.sample is not None:
        if not 1 <= selection.sample <= len(chosen):
            raise DatasetError(f"sample size {selection.sample} outside 1..{len(chosen)}", file=dataset.path)
        # random.Random(int) is specified (Mersenne Twister, seeded from the int) and
        # identical on every platform; sorting keeps file order in the sample.
        picked = sorted(random.Random(selection.seed).sample(range(len(chosen)), selection.sample))
        chosen = [chosen[i] for i in picked]
    if not chosen:
        raise DatasetError(f"selection {selection.describe()} is empty", file=dataset.path)
    return Dataset(tuple(chosen), dataset.path, dataset.sha256, selection.describe())


# ---------------------------------------------------------------- source resolution


def cache_dir() -> Path:
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "evalkit"


def _as_file(candidate: str, origin: str) -> Path:
    path = Path(candidate).expanduser().resolve()
    if path.is_dir():
        path = path / HARMBENCH_FILENAME
    if not path.is_file():
        raise DatasetError(f"HarmBench file not found (from {origin})", file=str(path))
    return path


def resolve_harmbench(
    option: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    allow_download: bool = True,
    url: str | None = None,
    sha256: str = HARMBENCH_SHA256,
    timeout: float = 30.0,
) -> Path:
    """Find the behaviors file: option, then $EVALKIT_HARMBENCH, then the cache, then download.

    A path from the option or the environment may be the CSV itself or a directory
    holding ``harmbench_behaviors_text_all.csv``. Downloads are verified by sha256
    and written atomically, so a failed download never leaves a bad cache entry.
    """
    variables = os.environ if environ is None else environ
    if option:
        return _as_file(option, "--harmbench")
    if variables.get(ENV_PATH):
        return _as_file(variables[ENV_PATH], f"${ENV_PATH}")
    cached = cache_dir() / "harmbench" / f"{sha256[:16]}-{HARMBENCH_FILENAME}"
    if cached.is_file() and file_sha256(cached) == sha256:
        return cached
    if not allow_download:
        raise DatasetError(
            f"no HarmBench file: pass --harmbench PATH, set ${ENV_PATH}, or allow the download to {cached}")
    return download_harmbench(url or variables.get(ENV_URL) or HARMBENCH_URL, cached, sha256, timeout)


def download_harmbench(url: str, destination: Path, sha256: str, timeout: float = 30.0) -> Path:
    """Download ``url`` to ``destination``; refuse (and keep nothing) on a checksum mismatch."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (https or local test server)
            payload = response.read()
    except (urllib.error.URLError, OSError) as exc:
        raise DatasetError(f"download failed: {exc}; offline, point --harmbench PATH or ${ENV_PATH} at a local "
                           "copy of the CSV (or its directory)", file=url) from None
    except (http.client.HTTPException, ValueError) as exc:  # its text quotes the URL's host part, maybe a password
        raise DatasetError(f"download failed: a malformed URL ({type(exc).__name__}); user:password@ is not "
                           "supported (a token in the query is)", file=url) from None
    actual = hashlib.sha256(payload).hexdigest()
    if actual != sha256:
        raise DatasetError(f"checksum mismatch: expected sha256 {sha256}, got {actual}", file=url)
    fd, tmp = tempfile.mkstemp(dir=destination.parent, prefix=".download-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, destination)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return destination


def categories(behaviors: Iterable[Behavior]) -> dict[str, list[str]]:
    """Behavior ids grouped by semantic category (file order within each)."""
    groups: dict[str, list[str]] = {}
    for behavior in behaviors:
        groups.setdefault(behavior.semantic_category, []).append(behavior.behavior_id)
    return groups
