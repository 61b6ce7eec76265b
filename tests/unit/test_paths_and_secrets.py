"""Names that become paths stay under the results directory; credentials reach no file.

Attacks from issue 11: a framing pair id (or model name) crafted to climb out of
``--results-dir`` or to break the file system's rules, and credentials in ``--base-url``
or echoed back by a server.
"""

import dataclasses
import json

import pytest

from evalkit.cli import main
from evalkit.suites import SessionConfig, prepare
from tests.conftest import JSONHandler, serve_http

pytestmark = pytest.mark.unit

HOSTILE_NAMES = ["../../../../escaped", "a/../../b", "x\x00y", "p" * 300, "line\nbreak", "\u202eevil", "..",
                 ".hidden", "\x1b]0;title\x07"]


def framing_toml(pair_id: str) -> str:
    quoted = json.dumps(pair_id)  # a TOML basic string: JSON's escapes are TOML's
    return f"""
[set]
id = "hostile"
format = "chat"

[framings.free]
tier = "free"
system = "free tier"
user_template = "{{behavior}}"

[framings.paid]
tier = "paid"
system = "paid tier"
user_template = "{{behavior}}"

[pairs.{quoted}]
free = "free"
paid = "paid"
"""


def all_files(root):
    return {p for p in root.rglob("*")}


@pytest.mark.parametrize("pair_id", HOSTILE_NAMES)
def test_a_hostile_pair_id_writes_nothing_outside_the_results_dir(pair_id, synthetic_csv, tmp_path, capsys):
    config = tmp_path / "config" / "framings.toml"
    config.parent.mkdir()
    config.write_text(framing_toml(pair_id), encoding="utf-8")
    results = tmp_path / "a" / "b" / "c" / "d" / "e" / "results"  # deep, so an escape stays inside tmp_path
    before = all_files(tmp_path)
    code = main(["run", "--framings", str(config), "--harmbench", str(synthetic_csv), "--results-dir", str(results),
                 "--model", "null", "--n", "4"])
    err = capsys.readouterr().err
    created = all_files(tmp_path) - before
    outside = [p for p in created if results not in p.parents and p not in results.parents and p != results]
    assert outside == [], outside
    if code != 0:  # refused: one clear line naming the file
        assert code == 2 and err.count("\n") == 1 and "framings.toml" in err, err
        assert not (results / "runs").exists() or not any((results / "runs").iterdir())


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_run_directory_names_are_slugged_bounded_and_under_the_store(name, synthetic_csv, tmp_path):
    session = prepare(SessionConfig(models=("null",), harmbench=str(synthetic_csv), suites=("pilot",), n=4,
                                    pairs=("free-vs-paid",), results_dir=str(tmp_path / "results")))
    spec = dataclasses.replace(session.plans[0].spec, pair=name, model=name)
    run_dir = session.store.run_dir(spec)
    assert run_dir.parent == session.store.runs_dir
    assert len(run_dir.name.encode()) <= 200 and run_dir.name.isprintable() and "/" not in run_dir.name
    assert not run_dir.name.startswith(".") and ".." not in run_dir.name.split("/")


# ---------------------------------------------------------------- 3. secrets


PASSWORD_MARK = "PWSECRET"
KEY = "sk-evalkit-Zq81LmN0pQ4rWx9K"


class Completions(JSONHandler):
    """An OpenAI-compatible stub: answers every request; with ``echo`` set, rejects it with
    a message quoting the caller's key masked and upper-cased, as some servers do."""

    echo = False

    def do_GET(self):  # noqa: N802 - /models, the boot check
        self._send(200, {"data": []})

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if Completions.echo:
            key = self.headers.get("Authorization", "").removeprefix("Bearer ")
            masked = f"{key[:6]}{'*' * 12}{key[-4:]}"
            self._send(400, {"error": {"message": f"Incorrect API key provided: {masked}. "
                                                  f"Key {key.upper()} is not valid for this model."}})
            return
        self._send(200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": "I can't help."},
                                      "finish_reason": "stop"}],
                         "usage": {"prompt_tokens": 3, "completion_tokens": 3}})


@pytest.fixture
def server():
    Completions.echo = False
    with serve_http(Completions) as url:
        yield url


def openai_run(base_url, synthetic_csv, results, *extra):
    return main(["run", "--engine", "openai", "--model", "stub", "--base-url", base_url, "--harmbench",
                 str(synthetic_csv), "--results-dir", str(results), "--n", "4", "--pair", "free-vs-paid",
                 "--max-retries", "0", "--max-error-rate", "1", *extra])


def written_text(results):
    return {p: p.read_text(encoding="utf-8", errors="replace") for p in results.rglob("*") if p.is_file()}


@pytest.mark.parametrize("credentials", ["userinfo", "query"])
def test_credentials_in_the_base_url_reach_no_file_and_not_the_run_identity(credentials, server, synthetic_csv,
                                                                           tmp_path, capsys):
    host = server.removeprefix("http://")
    results = tmp_path / "results"
    printed = ""
    for password in ("one", "two"):  # the identity must not change when the password does
        secret = f"{PASSWORD_MARK}{password}"
        url = (f"http://evaluser:{secret}@{host}/v1" if credentials == "userinfo"
               else f"http://{host}/v1?api_key={secret}")
        assert openai_run(url, synthetic_csv, results) == 0
        captured = capsys.readouterr()
        printed += captured.out + captured.err
    assert "(reused, 0 generated)" in printed  # the second password found the first run
    assert PASSWORD_MARK not in printed
    for path, text in written_text(results).items():
        assert PASSWORD_MARK not in text, f"a credential reached {path}"
    runs = [p for p in (results / "runs").iterdir() if p.is_dir()]
    assert len(runs) == 1


@pytest.mark.parametrize("variable", ["OPENAI_API_KEY", "MY_GATEWAY_CRED"])  # the second: a name that says nothing
def test_a_key_echoed_masked_or_upper_cased_by_a_server_is_never_stored_or_shown(variable, server, synthetic_csv,
                                                                                 tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(variable, KEY)
    Completions.echo = True
    results = tmp_path / "results"
    assert openai_run(f"{server}/v1", synthetic_csv, results, "--api-key-env", variable) == 0
    run_dir = next(p for p in (results / "runs").iterdir() if p.is_dir())
    assert main(["show", str(run_dir)]) == 0
    captured = capsys.readouterr()
    fragments = (KEY, KEY.upper(), KEY.lower(), KEY[-4:], KEY[-8:].upper(), KEY[7:15])
    records = (run_dir / "records.jsonl").read_text()
    assert "HTTP 400" in records  # the error is recorded, with its status
    for text in [*written_text(results).values(), captured.out, captured.err]:
        for fragment in fragments:
            assert fragment not in text and fragment.upper() not in text.upper()


def test_an_at_sign_in_the_path_of_a_url_without_credentials_is_kept():
    from evalkit.safety import public_url

    assert public_url("https://cdn.jsdelivr.net/gh/o/r@main/x.csv") == "https://cdn.jsdelivr.net/gh/o/r@main/x.csv"
    assert public_url("http://u:123/pw@127.0.0.1:9/v1") == "http://127.0.0.1:9/v1"


@pytest.mark.parametrize("base_url", [f"evaluser:{PASSWORD_MARK}x@127.0.0.1:9/v1",  # the scheme forgotten
                                      f"http://evaluser:123/{PASSWORD_MARK}@127.0.0.1:9/v1",  # '/' not encoded
                                      f"http://evaluser:123?{PASSWORD_MARK}@127.0.0.1:9/v1",
                                      f"http://evaluser:123#{PASSWORD_MARK}@127.0.0.1:9/v1"])
def test_credentials_of_a_malformed_base_url_are_not_echoed_by_its_error(base_url, synthetic_csv, tmp_path, capsys):
    assert openai_run(base_url, synthetic_csv, tmp_path / "results") == 2
    err = capsys.readouterr().err
    assert "--base-url" in err and err.count("\n") == 1, err
    assert PASSWORD_MARK not in err and "123" not in err, err


@pytest.mark.parametrize("password", ["pw/" + PASSWORD_MARK, "pw?" + PASSWORD_MARK, "pw#" + PASSWORD_MARK])
def test_a_password_with_an_unencoded_separator_is_refused_in_one_line_without_any_of_it(password, synthetic_csv,
                                                                                          tmp_path, capsys):
    # urllib reads 'user:pw' as host and port, so 'pw' once reached a ValueError traceback
    code = openai_run(f"http://evaluser:{password}@127.0.0.1:9/v1", synthetic_csv, tmp_path / "results")
    err = capsys.readouterr().err
    assert code == 2 and "--base-url" in err and "percent-encode" in err and err.count("\n") == 1, err
    assert PASSWORD_MARK not in err and "pw" not in err.lower().replace("percent", ""), err


def test_a_port_that_is_not_a_number_is_a_one_line_error(synthetic_csv, tmp_path, capsys):
    assert openai_run("http://127.0.0.1:notaport/v1", synthetic_csv, tmp_path / "results") == 2
    err = capsys.readouterr().err
    assert "option --base-url: the port of 'http://127.0.0.1:notaport/v1' is not a number" in err, err


def test_a_key_given_instead_of_its_variables_name_is_not_echoed(synthetic_csv, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # the key is in no variable: only the message could hide it
    code = openai_run("http://127.0.0.1:9/v1", synthetic_csv, tmp_path / "results", "--api-key-env", KEY)
    err = capsys.readouterr().err
    assert code == 2 and "option --api-key-env: expected the NAME of an environment variable" in err, err
    assert KEY[:8] not in err, err


def test_a_summary_naming_a_run_outside_its_results_dir_is_refused(synthetic_csv, tmp_path, capsys):
    """report and compare read each row's run at results/runs/<run>; a summary.json (a CI artifact,
    say) whose run is '../..' or an absolute path made them read, and show, another store's run."""
    for name in ("results", "other"):
        assert main(["run", "--model", "null", "--harmbench", str(synthetic_csv), "--results-dir",
                     str(tmp_path / name), "--n", "4", "--pair", "free-vs-paid"]) == 0
    other_run = next(p for p in (tmp_path / "other" / "runs").iterdir() if p.is_dir())
    summary = tmp_path / "results" / "summary.json"
    for run in (str(other_run), f"../../other/runs/{other_run.name}"):
        payload = json.loads(summary.read_text())
        payload["rows"][0]["run"] = run
        summary.unlink()  # a link to the current generation; written over as a plain file
        summary.write_text(json.dumps(payload))
        capsys.readouterr()
        assert main(["report", str(tmp_path / "results"), "-o", str(tmp_path / "report.html")]) == 2
        assert main(["compare", str(tmp_path / "results"), str(tmp_path / "other")]) == 2
        err = capsys.readouterr().err
        assert err.count("summary.json") == 2 and "names run" in err, err
        assert not (tmp_path / "report.html").exists()


def test_the_report_is_never_written_over_the_run_store_or_the_summary(synthetic_csv, tmp_path, capsys):
    results = tmp_path / "results"
    assert main(["run", "--model", "null", "--harmbench", str(synthetic_csv), "--results-dir", str(results),
                 "--n", "4", "--pair", "free-vs-paid"]) == 0
    run_dir = next(p for p in (results / "runs").iterdir() if p.is_dir())
    for name in ("compare.json", "compare.md"):  # what a session under --baseline writes beside its summary
        (results / name).write_text(f"{name} of a comparison\n")
    for target in (run_dir / "records.jsonl", run_dir / "manifest.json", results / "summary.json",
                   results / "summary.md", results / "compare.json", results / "compare.md"):
        before = target.read_bytes()
        capsys.readouterr()
        assert main(["report", str(results), "-o", str(target)]) == 2
        err = capsys.readouterr().err
        assert "write the report elsewhere" in err and err.count("\n") == 1, err
        assert target.read_bytes() == before
    assert main(["show", str(run_dir)]) == 0  # the run is intact


def test_report_figures_over_a_file_named_figures_is_refused_before_anything_is_written(synthetic_csv, tmp_path,
                                                                                        capsys):
    pytest.importorskip("matplotlib")
    results = tmp_path / "results"
    assert main(["run", "--model", "null", "--harmbench", str(synthetic_csv), "--results-dir", str(results),
                 "--n", "4", "--pair", "free-vs-paid"]) == 0
    (results / "figures").write_text("not a directory\n")
    summary_md = (results / "summary.md").read_bytes()
    capsys.readouterr()
    assert main(["report", str(results), "--figures"]) == 2
    err = capsys.readouterr().err
    assert "figures is a file" in err and "--figures" in err and err.count("\n") == 1, err
    assert not (results / "report.html").exists() and (results / "summary.md").read_bytes() == summary_md


def test_a_snapshots_engine_hash_does_not_depend_on_the_base_urls_credentials(synthetic_csv, tmp_path):
    """The snapshot is committed: a hash over the password could be guessed offline, and a new
    password read as a model change ('model: engine_sha256 ... -> ...')."""
    from evalkit.snapshots import provenance

    session = prepare(SessionConfig(models=("null",), harmbench=str(synthetic_csv), suites=("pilot",), n=4,
                                    pairs=("free-vs-paid",), results_dir=str(tmp_path / "results")))
    spec = session.plans[0].spec

    def engine_hash(base_url):
        config = {**spec.engine_config, "engine": "openai", "options": {"base_url": base_url}}
        return provenance(dataclasses.replace(spec, engine="openai", engine_config=config), "refusal", {})[
            "engine_sha256"]

    plain = engine_hash("http://127.0.0.1:8000/v1")
    assert engine_hash(f"http://user:{PASSWORD_MARK}one@127.0.0.1:8000/v1") == plain
    assert engine_hash(f"http://user:{PASSWORD_MARK}two@127.0.0.1:8000/v1") == plain
    assert engine_hash("http://127.0.0.1:8001/v1") != plain  # another server is another engine


def test_a_judges_hash_is_the_same_from_the_live_judge_and_from_its_manifest_record(synthetic_csv, tmp_path):
    """pytest --baseline hashes the session's live judge, the baseline side its manifest record
    (credentials cut): a judge served behind a password made every row 'not comparable:
    judge_sha256', and a new password a snapshot's provenance change."""
    from evalkit.judges import JudgeSettings
    from evalkit.rejudge import judge_identity
    from evalkit.snapshots import provenance

    def judge_hash(base_url, recorded):
        settings = JudgeSettings.from_options({"judge_engine": "openai", "judge_model": "judge-m",
                                               "judge_option": [f"base_url={base_url}"]})
        session = prepare(SessionConfig(models=("null",), harmbench=str(synthetic_csv), suites=("pilot",), n=4,
                                        pairs=("free-vs-paid",), results_dir=str(tmp_path / "results"), judge="llm",
                                        judge_settings=settings))
        judge = next(j for j in session.judges if j.name == "llm")
        description = judge_identity(judge) if recorded else judge.describe()
        return provenance(session.plans[0].spec, judge.name, description)["judge_sha256"]

    stored = judge_hash(f"http://user:{PASSWORD_MARK}one@127.0.0.1:8000/v1", recorded=True)
    assert judge_hash(f"http://user:{PASSWORD_MARK}one@127.0.0.1:8000/v1", recorded=False) == stored
    assert judge_hash(f"http://user:{PASSWORD_MARK}two@127.0.0.1:8000/v1", recorded=False) == stored
    assert judge_hash("http://127.0.0.1:8001/v1", recorded=False) != stored  # another judge server


def test_a_proxy_password_with_an_unencoded_slash_is_a_one_line_error_without_it(synthetic_csv, tmp_path, capsys,
                                                                                 monkeypatch):
    for name in ("NO_PROXY", "no_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://proxyuser:pw/{PASSWORD_MARK}@127.0.0.1:3128")
    assert openai_run("http://127.0.0.1:9/v1", synthetic_csv, tmp_path / "results") == 2
    err = capsys.readouterr().err
    assert "$HTTP_PROXY" in err and err.count("\n") == 1, err
    assert PASSWORD_MARK not in err and "'pw'" not in err, err


def test_interval_headers_name_the_level_they_were_computed_at(synthetic_csv, tmp_path, capsys):
    """--alpha 0.1 computes 90% intervals: the terminal table, summary.md and the comparison said
    '95% CI' whatever the level."""
    results = {}
    for name in ("base", "cand"):
        results[name] = tmp_path / name
        capsys.readouterr()
        assert main(["run", "--model", "null", "--harmbench", str(synthetic_csv), "--results-dir",
                     str(results[name]), "--n", "8", "--pair", "free-vs-paid", "--alpha", "0.1"]) == 0
        printed = capsys.readouterr().out
        assert "gap [90% CI]" in printed and "95%" not in printed
        assert "gap [90% CI]" in (results[name] / "summary.md").read_text()
    assert main(["compare", str(results["base"]), str(results["cand"]), "--alpha", "0.1"]) == 0
    printed = capsys.readouterr().out
    assert "[change 90% CI]" in printed and "gap change [90% CI]" in printed and "95%" not in printed
