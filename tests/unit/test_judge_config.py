"""Judge options: parsing, the option table, and a session's judges (built, not booted)."""

import pytest

from evalkit.errors import ConfigError
from evalkit.judges import TIE_RULES, JudgeSettings, close_judges, judge_names
from evalkit.judges.harmbench import HarmBenchClassifierJudge
from evalkit.options import JUDGE, all_options
from evalkit.suites import SessionConfig, prepare

pytestmark = pytest.mark.unit


def test_settings_from_option_values():
    settings = JudgeSettings.from_options({
        "judge_engine": "openai", "judge_model": "judge", "judge_option": ["base_url=http://h/v1", "max-retries = 2"],
        "vote_judges": "refusal, seed,llm", "vote_tie": "first"})
    assert settings == JudgeSettings(engine="openai", model="judge",
                                     options=(("base_url", "http://h/v1"), ("max_retries", "2")),
                                     vote_judges=("refusal", "seed", "llm"), vote_tie="first")
    assert JudgeSettings.from_options({}) == JudgeSettings()


@pytest.mark.parametrize("values, fragment", [
    ({"judge_option": ["novalue"]}, "option --judge-option: expected KEY=VALUE, got 'novalue'"),
    ({"judge_option": ["=x"]}, "expected KEY=VALUE"),
    ({"judge_option": ["a=1", "a=2"]}, "key 'a' given more than once"),
    ({"vote_tie": "coin"}, "option --vote-tie: unknown tie rule 'coin'"),
])
def test_bad_option_values(values, fragment):
    with pytest.raises(ConfigError, match=fragment):
        JudgeSettings.from_options(values)


def test_option_table():
    flags = {o.flag: o for o in JUDGE}
    assert set(flags) == {"--judge-engine", "--judge-model", "--judge-option", "--vote-judges", "--vote-tie"}
    assert set(JUDGE) <= set(all_options())  # the pytest plugin registers every option of all_options()
    assert flags["--vote-tie"].choices == TIE_RULES and flags["--judge-option"].action == "append"
    assert not any(o.engine_option for o in JUDGE)  # never forwarded to the engine under test
    assert {"seed", "refusal", "training-trace", "harmbench-cls", "llm", "training-trace-llm", "vote"} <= \
        set(judge_names())


def config(synthetic_csv, tmp_path, **values):
    base = {"model": ["study-pilot"], "harmbench": str(synthetic_csv), "suite": ["replication"],
            "pair": ["free-vs-paid"], "results_dir": str(tmp_path / "results")}
    return SessionConfig.from_options({**base, **values}, {})


def test_session_with_a_vote(synthetic_csv, tmp_path):
    with pytest.raises(ConfigError, match="does not label refusal/compliance"):
        prepare(config(synthetic_csv, tmp_path, judge="vote", vote_judges="refusal,seed,training-trace"))
    session = prepare(config(synthetic_csv, tmp_path, judge="vote", vote_judges="refusal,seed", vote_tie="refusal"))
    assert [j.name for j in session.judges] == ["vote", "refusal", "seed"]
    assert session.judges[0].members == tuple(session.judges[1:])


def test_session_with_the_classifier_builds_without_booting(synthetic_csv, tmp_path):
    session = prepare(config(synthetic_csv, tmp_path, judge="harmbench-cls", judge_engine="vllm",
                             judge_model="/models/cls", judge_option=["max_model_len=4096"]))
    classifier = session.judges[0]
    assert isinstance(classifier, HarmBenchClassifierJudge) and classifier._engine is None
    assert set(classifier.behaviors) == {b.behavior_id for b in session.dataset}  # it reads behaviors by id
    assert classifier.engine_config.options == {"max_model_len": 4096}
    close_judges(session.judges)  # nothing booted: nothing to close, and no error


def test_judge_errors_come_before_the_dataset_is_read(tmp_path):
    values = {"model": ["study-pilot"], "harmbench": str(tmp_path / "missing.csv"), "judge": "llm",
              "results_dir": str(tmp_path / "r")}
    with pytest.raises(ConfigError, match="--judge-model"):
        prepare(SessionConfig.from_options(values, {}))
