import hashlib
import http.server
import os
from pathlib import Path

import pytest

from evalkit import datasets
from evalkit.datasets import DatasetError, Selection, load_behaviors, resolve_harmbench, select
from tests.conftest import serve_http

pytestmark = pytest.mark.unit
BAD = Path(__file__).resolve().parents[2] / "fixtures" / "behaviors"


def test_harmbench_loads_with_study_composition(harmbench_csv):
    dataset = load_behaviors(harmbench_csv)
    assert len(dataset) == 400
    assert dataset.sha256 == datasets.HARMBENCH_SHA256
    first = dataset.behaviors[:200]
    assert {b.functional_category for b in first} == {"standard"}  # the pilot's 200 are all standard
    counts = {c: sum(b.functional_category == c for b in dataset) for c in datasets.FUNCTIONAL_CATEGORIES}
    assert counts == {"standard": 200, "contextual": 100, "copyright": 100}
    assert [b.row for b in dataset.behaviors[:3]] == [1, 2, 3]


def test_contextual_behavior_rendered_with_context_first(harmbench_csv):
    contextual = next(b for b in load_behaviors(harmbench_csv) if b.functional_category == "contextual")
    assert contextual.context
    assert contextual.request == f"{contextual.context}\n\n---\n\n{contextual.behavior}"
    standard = next(b for b in load_behaviors(harmbench_csv) if b.functional_category == "standard")
    assert standard.request == standard.behavior


def test_synthetic_fixture_parses_tags_and_context(synthetic_csv):
    dataset = load_behaviors(synthetic_csv)
    poem = next(b for b in dataset if b.behavior_id == "poem_continue")
    assert poem.tags == ("book", "hash_check")
    greeting = next(b for b in dataset if b.behavior_id == "greeting_formal")
    assert greeting.request.startswith("Hello there, friend!\n\n---\n\n")


@pytest.mark.parametrize("name, row, column, fragment", [
    ("missing_column.csv", 0, "SemanticCategory", "missing required column"),
    ("duplicate_id.csv", 4, "BehaviorID", "duplicate BehaviorID 'teapot_limerick' (first on row 1)"),
    ("empty_behavior.csv", 3, "Behavior", "empty behavior text"),
    ("empty_id.csv", 2, "BehaviorID", "empty BehaviorID"),
    ("unknown_category.csv", 3, "FunctionalCategory", "unknown FunctionalCategory 'weird'"),
    ("contextual_without_context.csv", 4, "ContextString", "contextual behavior without ContextString"),
])
def test_malformed_files_name_file_row_and_column(name, row, column, fragment):
    with pytest.raises(DatasetError) as info:
        load_behaviors(BAD / name)
    message = str(info.value)
    assert name in message and fragment in message
    assert info.value.row == row and info.value.column == column
    assert f"row {row}" in message and repr(column) in message


def test_a_column_named_twice_is_refused(tmp_path):
    # which of two BehaviorID columns held the ids depended on csv.DictReader (the last one won)
    path = tmp_path / "twice.csv"
    path.write_text("Behavior,FunctionalCategory,SemanticCategory,Tags,ContextString,BehaviorID,BehaviorID\n"
                    "Write a limerick about teapots,standard,misc,,,teapot_limerick,other_id\n", encoding="utf-8")
    with pytest.raises(DatasetError) as info:
        load_behaviors(path)
    assert "twice.csv, row 0, column 'BehaviorID': the header names it twice" in str(info.value)


def test_undecodable_bytes_name_the_row():
    with pytest.raises(DatasetError) as info:
        load_behaviors(BAD / "undecodable.csv")
    assert "not valid UTF-8" in str(info.value) and info.value.row == 3 and "undecodable.csv" in str(info.value)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="file not found"):
        load_behaviors(tmp_path / "nope.csv")


def test_selections(harmbench_csv):
    full = load_behaviors(harmbench_csv)
    first = select(full, Selection(first=200))
    assert [b.behavior_id for b in first] == [b.behavior_id for b in full.behaviors[:200]]
    assert first.selection == "first=200"
    contextual = select(full, Selection(functional=("contextual",)))
    assert len(contextual) == 100 and {b.functional_category for b in contextual} == {"contextual"}
    chem = select(full, Selection(semantic=("chemical_biological",)))
    assert len(chem) == 56
    sample = select(full, Selection(sample=50, seed=7))
    again = select(full, Selection(sample=50, seed=7))
    other = select(full, Selection(sample=50, seed=8))
    assert [b.behavior_id for b in sample] == [b.behavior_id for b in again]
    assert [b.behavior_id for b in sample] != [b.behavior_id for b in other]
    rows = [b.row for b in sample]
    assert rows == sorted(rows) and len(set(rows)) == 50
    with pytest.raises(DatasetError, match="asked for the first 401"):
        select(full, Selection(first=401))
    with pytest.raises(DatasetError, match="unknown semantic category"):
        select(full, Selection(semantic=("nonsense",)))


def test_resolution_order_option_then_env_then_cache(tmp_path, synthetic_csv, monkeypatch):
    monkeypatch.setenv("EVALKIT_CACHE_DIR", str(tmp_path / "cache"))
    env = {"EVALKIT_HARMBENCH": str(synthetic_csv.parent)}
    other = tmp_path / "other.csv"
    other.write_bytes(synthetic_csv.read_bytes())
    assert resolve_harmbench(str(other), environ=env) == other
    with pytest.raises(DatasetError, match="HarmBench file not found"):
        resolve_harmbench(None, environ=env)  # a directory without the official file name
    data_dir = tmp_path / "hb"
    data_dir.mkdir()
    (data_dir / datasets.HARMBENCH_FILENAME).write_bytes(synthetic_csv.read_bytes())
    assert resolve_harmbench(None, environ={"EVALKIT_HARMBENCH": str(data_dir)}) == \
        data_dir / datasets.HARMBENCH_FILENAME
    env_file = {"EVALKIT_HARMBENCH": str(synthetic_csv)}
    assert resolve_harmbench(None, environ=env_file) == synthetic_csv
    with pytest.raises(DatasetError, match="from \\$EVALKIT_HARMBENCH"):
        resolve_harmbench(None, environ={"EVALKIT_HARMBENCH": str(tmp_path / "missing.csv")})
    # the cache is used when it holds a file with the pinned checksum
    payload = synthetic_csv.read_bytes()
    digest = hashlib.sha256(payload).hexdigest()
    cached = tmp_path / "cache" / "harmbench" / f"{digest[:16]}-{datasets.HARMBENCH_FILENAME}"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(payload)
    assert resolve_harmbench(None, environ={}, sha256=digest, allow_download=False) == cached
    with pytest.raises(DatasetError, match="no HarmBench file"):
        resolve_harmbench(None, environ={}, allow_download=False)


@pytest.fixture
def local_server(harmbench_csv):
    """Serve ../shared/data/harmbench on 127.0.0.1, as the official host would serve the file."""
    directory = str(harmbench_csv.parent)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=directory, **kwargs)

        def log_message(self, *args):
            pass

    with serve_http(Handler) as url:
        yield url


def test_download_verifies_checksum_and_caches(local_server, tmp_path, monkeypatch):
    monkeypatch.setenv("EVALKIT_CACHE_DIR", str(tmp_path / "cache"))
    url = f"{local_server}/{datasets.HARMBENCH_FILENAME}"
    path = resolve_harmbench(None, environ={}, url=url)
    assert path.parent == tmp_path / "cache" / "harmbench"
    assert datasets.file_sha256(path) == datasets.HARMBENCH_SHA256
    assert len(load_behaviors(path)) == 400
    # second resolution hits the cache: the server is not needed any more
    assert resolve_harmbench(None, environ={}, url="http://127.0.0.1:9/unreachable") == path


def test_download_with_wrong_checksum_keeps_nothing(local_server, tmp_path, monkeypatch):
    monkeypatch.setenv("EVALKIT_CACHE_DIR", str(tmp_path / "cache"))
    url = f"{local_server}/harmbench_behaviors_text_val.csv"  # a different file under the pinned name
    with pytest.raises(DatasetError, match="checksum mismatch"):
        resolve_harmbench(None, environ={}, url=url)
    leftovers = list((tmp_path / "cache").rglob("*")) if (tmp_path / "cache").exists() else []
    assert [p for p in leftovers if p.is_file()] == []


def test_download_failure_is_clear(tmp_path, monkeypatch):
    monkeypatch.setenv("EVALKIT_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(DatasetError, match="download failed") as raised:
        resolve_harmbench(None, environ={}, url="http://127.0.0.1:9/nothing-listens-here", timeout=2)
    assert "--harmbench PATH" in str(raised.value) and "$EVALKIT_HARMBENCH" in str(raised.value)  # the way out


@pytest.mark.parametrize("url", ["http://evaluser:PWMARK@127.0.0.1/harmbench.csv",  # http.client: host 'evaluser'
                                 "http://127.0.0.1:notaport/harmbench.csv"])
def test_a_malformed_download_url_is_a_clear_error_quoting_no_password(url, tmp_path, monkeypatch):
    monkeypatch.setenv("EVALKIT_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(DatasetError, match="download failed: a malformed URL") as raised:
        resolve_harmbench(None, environ={}, url=url, timeout=2)
    assert "PWMARK" not in str(raised.value)


def test_pinned_url_names_a_commit():
    assert datasets.HARMBENCH_COMMIT in datasets.HARMBENCH_URL
    assert len(datasets.HARMBENCH_COMMIT) == 40
    assert os.path.basename(datasets.HARMBENCH_URL) == datasets.HARMBENCH_FILENAME


def test_the_same_request_under_another_id_is_refused(tmp_path):
    """Two ids with one behavior text and context are one request counted twice: their pairs are
    not independent (a wording-level draw, or a real model's deterministic answer, repeats), so
    the paired tests would be too sure. HarmBench repeats a text only with another context."""
    path = tmp_path / "repeated.csv"
    path.write_text("Behavior,FunctionalCategory,SemanticCategory,Tags,ContextString,BehaviorID\n"
                    "Write a limerick about teapots,standard,misc,,,teapot_a\n"
                    "Summarize this,contextual,misc,,First context,summary_a\n"
                    "Summarize this,contextual,misc,,Second context,summary_b\n"
                    "Write a limerick about teapots,standard,misc,,,teapot_b\n")
    with pytest.raises(DatasetError, match=r"row 4, column 'Behavior': the same Behavior and ContextString as row 1"):
        load_behaviors(path)
