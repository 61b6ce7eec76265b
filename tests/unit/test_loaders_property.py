"""Property: whatever a user's file or a damaged run directory holds, every loader and
reader returns a result or raises InputError (a one-line, located error), never another
exception; and a complete run is either read exactly as it was written or refused.

Deterministic for CI: derandomized, a bounded number of examples, no example database.
"""

import csv
import io
import json
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evalkit.datasets import Behavior, load_behaviors
from evalkit.engines import EngineConfig
from evalkit.engines.sim import SimEngine
from evalkit.errors import InputError
from evalkit.framings import parse_framing_set
from evalkit.runs import MANIFEST, RECORDS, VERDICTS_DIR, execute, load_run, read_records
from evalkit.suites import SessionConfig, prepare

pytestmark = pytest.mark.unit

PROPERTY = settings(max_examples=120, derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Characters that matter to the parsers: braces and format syntax, quotes, separators,
# controls, bidi, surrogate-adjacent code points, and ordinary letters.
TRICKY = st.sampled_from(list("{}!:.[]0 ,\"'\\\n\r\t\x00\x1b\u202e\u2028/") +
                         ["behavior", "request", "system", "user", "free", "paid", "..", "{behavior}",
                          "{request}", "{system}", "{user}", "{{", "}}", "\ud7ff", "é"])
TEXT = st.one_of(st.text(max_size=30), st.lists(TRICKY, max_size=8).map("".join))
VALUE = st.one_of(TEXT, st.integers(-3, 3), st.booleans(), st.lists(st.integers(0, 3), max_size=2),
                  st.just({"x": 1}))


def toml_value(value) -> str:
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string (JSON escapes are TOML escapes)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return str(value)


def table(name: str, fields: dict) -> str:
    return f"[{name}]\n" + "".join(f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in fields.items())


def mostly(valid, other):
    """``valid`` nine times in ten: deep checks are only reached past the shallow ones."""
    return st.integers(0, 9).flatmap(lambda roll: other if roll == 0 else valid)


# Pieces of format syntax, so templates probe the template checks rather than the TOML parser.
TEMPLATE_PIECES = st.sampled_from(["{behavior}", "{request}", "{system}", "{user}", "{", "}", "{{", "}}", "{behavior",
                                   ":>9", ":{request}", "!r", "!s", ".__class__", "[0]", "}", "text ", "\n", "{0}",
                                   "{}", "{behavior:>99}", "{request!a}", "{behavior.upper}"])
TEMPLATE = st.lists(TEMPLATE_PIECES, min_size=1, max_size=6).map("".join)
FRAMING_FIELDS = st.fixed_dictionaries(
    {"tier": mostly(st.sampled_from(["free", "paid", "none"]), VALUE),
     "user_template": mostly(st.one_of(st.just("{behavior}"), TEMPLATE), VALUE)},
    optional={"system": mostly(TEXT, VALUE), "format": mostly(st.sampled_from(["chat", "raw"]), VALUE),
              "raw_template": mostly(st.one_of(st.just("{system}\n\n{user}"), TEMPLATE), VALUE)})
PAIR_FIELDS = st.fixed_dictionaries({"free": mostly(st.just("a"), TEXT), "paid": mostly(st.just("b"), TEXT)},
                                    optional={"kind": mostly(st.sampled_from(["treatment", "control"]), VALUE)})


@st.composite
def framing_sets(draw) -> str:
    if draw(st.integers(0, 19)) == 0:
        return draw(st.text(max_size=200))  # not even TOML, usually
    parts = [table("set", draw(st.fixed_dictionaries({"id": mostly(st.just("s"), VALUE)},
                                                     optional={"format": mostly(st.just("chat"), VALUE),
                                                               "raw_template": mostly(TEMPLATE, VALUE),
                                                               "description": VALUE})))]
    framing_ids = draw(st.lists(mostly(st.sampled_from(["a", "b"]), TEXT), min_size=0, max_size=3))
    for framing_id in framing_ids:
        parts.append(table(f"framings.{json.dumps(framing_id)}", draw(FRAMING_FIELDS)))
    for pair_id in draw(st.lists(mostly(st.just("p"), TEXT), max_size=2)):
        parts.append(table(f"pairs.{json.dumps(pair_id)}", draw(PAIR_FIELDS)))
    return "\n".join(parts)


@PROPERTY
@given(framing_sets())
def test_framing_sets_load_or_fail_with_an_input_error(text):
    try:
        framing_set = parse_framing_set(text, "framings.toml")
    except InputError as exc:
        assert "\n" not in str(exc).strip() or "invalid TOML" in str(exc)
        return
    behavior = Behavior("b1", "text {with} braces", "standard", "cat", context="ctx {x}")
    for framing in framing_set.framings:
        framing.render(behavior)  # whatever loaded renders: no template can fail later


COLUMNS = ["Behavior", "FunctionalCategory", "SemanticCategory", "Tags", "ContextString", "BehaviorID"]
CELL = st.one_of(st.sampled_from(["standard", "contextual", "copyright", "", "x", "dup"]), TEXT)
VALID_CELL = {"Behavior": st.just("some behavior"), "FunctionalCategory": st.sampled_from(["standard", "contextual"]),
              "SemanticCategory": st.just("cat"), "Tags": st.just(""), "ContextString": st.just("a context"),
              "BehaviorID": st.one_of(st.just("id"), TEXT.map(lambda t: "id" + t))}


@st.composite
def behavior_files(draw) -> bytes:
    if draw(st.integers(0, 19)) == 0:
        return draw(st.binary(max_size=300))
    header = draw(mostly(st.just(COLUMNS), st.one_of(st.permutations(COLUMNS),
                                                     st.lists(st.sampled_from(COLUMNS + ["X"]), max_size=7))))
    rows = []
    for number in range(draw(st.integers(0, 5))):
        row = [draw(mostly(VALID_CELL.get(column, CELL), CELL)) for column in header]
        if draw(st.integers(0, 9)) == 0:  # a short or long row
            row = row[: draw(st.integers(0, len(row)))] + draw(st.lists(CELL, max_size=2))
        rows.append([f"{cell}{number}" if header[i:i + 1] == ["BehaviorID"] else cell for i, cell in enumerate(row)])
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    try:
        return buffer.getvalue().encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: send it as it would arrive, undecodable
        return buffer.getvalue().encode("utf-8", errors="surrogatepass")


@PROPERTY
@given(behavior_files())
def test_behavior_files_load_or_fail_with_an_input_error(content):
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "behaviors.csv"
        path.write_bytes(content)
        try:
            dataset = load_behaviors(path)
        except InputError:
            return
        assert len(dataset) >= 1 and all(b.behavior_id.isprintable() for b in dataset)


# ---------------------------------------------------------------- store corruptions


@pytest.fixture(scope="module")
def pristine(synthetic_csv, tmp_path_factory):
    results = tmp_path_factory.mktemp("pristine") / "results"
    session = prepare(SessionConfig(models=("study-pilot",), harmbench=str(synthetic_csv), suites=("pilot",), n=4,
                                    batch_size=2, pairs=("free-vs-paid",), results_dir=str(results)))
    plan = session.plans[0]
    run = execute(plan.spec, plan.schedule, session.store, lambda: SimEngine(EngineConfig(model="study-pilot")),
                  session.judges)
    return session, run.run_dir, load_run(run.run_dir)


def _json_value():
    return st.one_of(st.none(), st.booleans(), st.integers(-2, 20), TEXT, st.lists(st.integers(0, 2), max_size=2),
                     st.just({}))


CORRUPTIONS = st.one_of(
    st.tuples(st.just("flip byte"), st.sampled_from([MANIFEST, RECORDS]), st.integers(0, 10_000), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.sampled_from([MANIFEST, RECORDS]), st.integers(0, 10_000)),
    st.tuples(st.just("append"), st.sampled_from([MANIFEST, RECORDS]), st.binary(max_size=80)),
    st.tuples(st.just("delete line"), st.integers(0, 20)),
    st.tuples(st.just("duplicate line"), st.integers(0, 20)),
    st.tuples(st.just("swap lines"), st.integers(0, 20), st.integers(0, 20)),
    st.tuples(st.just("manifest field"), st.sampled_from(["spec", "status", "spec_sha256", "records_sha256",
                                                          "n_records", "record_format", "judges", "rerun"]),
              _json_value()),
    st.tuples(st.just("record field"), st.integers(0, 20), st.sampled_from(["index", "behavior_id", "slot", "batch",
                                                                            "verdicts", "response"]), _json_value()),
    st.tuples(st.just("label"), st.integers(0, 20), TEXT),
    st.tuples(st.just("verdict set"), st.binary(max_size=120)),
    st.tuples(st.just("remove"), st.sampled_from([MANIFEST, RECORDS])),
    st.tuples(st.just("directory"), st.sampled_from([MANIFEST, RECORDS, VERDICTS_DIR])),
)


def corrupt(run_dir: Path, corruption) -> bool:
    """Apply ``corruption``; True if the manifest was left as it was."""
    kind, *args = corruption
    records = run_dir / RECORDS
    lines = records.read_bytes().splitlines(keepends=True)
    if kind == "flip byte":
        path = run_dir / args[0]
        data = bytearray(path.read_bytes())
        data[args[1] % len(data)] ^= args[2]
        path.write_bytes(bytes(data))
        return args[0] != MANIFEST
    if kind == "truncate":
        path = run_dir / args[0]
        path.write_bytes(path.read_bytes()[: args[1] % (len(path.read_bytes()) + 1)])
        return args[0] != MANIFEST
    if kind == "append":
        with open(run_dir / args[0], "ab") as handle:
            handle.write(args[1])
        return args[0] != MANIFEST
    if kind == "delete line":
        del lines[args[0] % len(lines)]
    elif kind == "duplicate line":
        lines.insert(args[0] % len(lines), lines[args[0] % len(lines)])
    elif kind == "swap lines":
        i, j = args[0] % len(lines), args[1] % len(lines)
        lines[i], lines[j] = lines[j], lines[i]
    elif kind == "manifest field":
        manifest = json.loads((run_dir / MANIFEST).read_text())
        manifest[args[0]] = args[1]
        (run_dir / MANIFEST).write_text(json.dumps(manifest))
        return False
    elif kind in ("record field", "label"):
        index = args[0] % len(lines)
        data = json.loads(lines[index])
        if kind == "label":
            data["verdicts"]["refusal"] = args[1]
        else:
            data[args[1]] = args[2]
        lines[index] = (json.dumps(data) + "\n").encode()
    elif kind == "verdict set":
        (run_dir / VERDICTS_DIR).mkdir(exist_ok=True)
        (run_dir / VERDICTS_DIR / "refusal-0123456789.jsonl").write_bytes(args[0])
        return True
    elif kind == "remove":
        (run_dir / args[0]).unlink()
        return args[0] != MANIFEST
    elif kind == "directory":
        path = run_dir / args[0]
        if path.is_file():
            path.unlink()
        path.mkdir(exist_ok=True)
        return args[0] != MANIFEST
    records.write_bytes(b"".join(lines))
    return True


def timeless(records):
    return [(r.index, r.behavior_id, r.slot, r.batch, r.response, r.verdicts) for r in records]


@PROPERTY
@given(CORRUPTIONS)
def test_damaged_run_directories_are_read_exactly_or_refused(pristine, corruption):
    session, source, (_, expected) = pristine
    with tempfile.TemporaryDirectory() as directory:
        run_dir = Path(directory) / "runs" / source.name
        shutil.copytree(source, run_dir)
        manifest_intact = corrupt(run_dir, corruption)
        try:
            manifest, records = load_run(run_dir)
        except InputError:
            pass
        else:
            if manifest_intact and manifest["status"] == "complete":
                assert timeless(records) == timeless(expected), "a changed complete run was read as valid"
        try:
            read_records(run_dir / RECORDS)
        except InputError:
            pass
        plan = session.plans[0]
        try:  # the session's path: reuse, resume or refuse; never a traceback
            result = execute(plan.spec, plan.schedule, session.store, lambda: SimEngine(EngineConfig(
                model="study-pilot")), session.judges, run_dir=run_dir)
        except InputError:
            return
        assert timeless(result.records) == timeless(expected)
