"""Model aliases: parsing --model, the models file, and names that become file names."""

import pytest

from evalkit.engines import engine_names
from evalkit.errors import ConfigError
from evalkit.models import ModelEntry, changed_aliases, load_models_file, parse_model_option, resolve_models
from evalkit.options import ENGINE
from evalkit.snapshots import snapshot_path
from evalkit.suites import SessionConfig, engine_config

OPTIONS = {o.dest: o for o in ENGINE}


def parse(text):
    return parse_model_option(text, engine_names())


def test_model_option_forms():
    assert parse("null") == ModelEntry("null", "null")
    assert parse("m=sim:training-aware") == ModelEntry("m", "training-aware", engine="sim")
    assert parse("deepseek=deepseek-ai/DeepSeek-R1-Distill-Llama-8B") == \
        ModelEntry("deepseek", "deepseek-ai/DeepSeek-R1-Distill-Llama-8B")
    hub = parse("deepseek-ai/DeepSeek-R1-Distill-Llama-8B")  # bare: its own alias
    assert hub.alias == hub.model and hub.engine is None
    assert parse("/tmp/a=b/profile.toml").alias == "/tmp/a=b/profile.toml"  # a path, not an alias
    assert parse("vllm:Qwen/Qwen2.5-7B-Instruct").engine == "vllm"
    assert parse("m=nosuchengine:x").model == "nosuchengine:x"  # only known engines are prefixes


@pytest.mark.parametrize("text", ["a b=sim:null", "=sim:null", "m=", ".hidden=sim:null", ""])
def test_bad_aliases_are_refused_naming_the_option(text):
    with pytest.raises(ConfigError, match="--model"):
        parse(text)


def test_aliases_become_bounded_safe_file_names(tmp_path):
    long = parse("x" * 300)
    assert len(long.file_stem) <= 64 and long.file_stem != parse("x" * 301).file_stem
    assert parse("../x=sim:null").alias == "../x=sim:null"  # not an alias: a bare path, slugged below
    traversal = parse("../../etc/passwd")
    assert "/" not in traversal.file_stem and not traversal.file_stem.startswith(".")
    for stem in (long.file_stem, traversal.file_stem, "m"):
        path = snapshot_path(tmp_path, stem, "pilot", "../../../escape")
        assert path.resolve().is_relative_to(tmp_path.resolve())


def test_models_file_and_selection(tmp_path):
    path = tmp_path / "models.toml"
    path.write_text('[models.m]\nmodel = "sim:null"\n\n[models.deepseek]\nmodel = "deepseek-ai/x"\n'
                    'revision = "abc"\nengine = "vllm"\ndtype = "bfloat16"\nprefix_caching = false\n')
    entries = load_models_file(path, engine_names(), OPTIONS)
    assert entries["m"] == ModelEntry("m", "null", engine="sim", source=str(path))
    assert entries["deepseek"].options == {"dtype": "bfloat16", "enable_prefix_caching": False}
    every = resolve_models(None, str(path), engine_names(), OPTIONS)
    assert [e.alias for e in every] == ["m", "deepseek"]
    picked = resolve_models(["m", "other=sim:training-aware"], str(path), engine_names(), OPTIONS)
    assert [(e.alias, e.model) for e in picked] == [("m", "null"), ("other", "training-aware")]


@pytest.mark.parametrize("body, fragment", [
    ('[models.m]\nmodel = "x"\ncolour = "red"\n', "unknown key 'colour'"),
    ('[models.m]\nmodel = "x"\ndtype = "float64"\n', "dtype must be one of"),
    ('[models.m]\nengine = "sim"\n', "model must be a non-empty string"),
    ('[models."a b"]\nmodel = "x"\n', "alias 'a b' is not a valid name"),
    ('[models.m]\nmodel = "x"\nengine = "warp"\n', "unknown engine 'warp'"),
    ('[other]\nx = 1\n', "unknown top-level key 'other'"),
    ('[models.m\n', "invalid TOML"),
])
def test_bad_models_files_name_the_file_and_table(tmp_path, body, fragment):
    path = tmp_path / "models.toml"
    path.write_text(body)
    with pytest.raises(ConfigError, match="models.toml") as info:
        load_models_file(path, engine_names(), OPTIONS)
    assert fragment in str(info.value)


def test_engine_option_of_another_engine_is_refused(tmp_path):
    path = tmp_path / "models.toml"
    path.write_text('[models.m]\nmodel = "sim:null"\ndtype = "float32"\n')
    config = SessionConfig.from_options({"models_file": str(path)}, {})
    with pytest.raises(ConfigError, match=r"dtype applies to engine vllm or modal, not sim"):
        engine_config(config, config.models[0])


def test_the_same_alias_twice_with_two_models_is_refused():
    with pytest.raises(ConfigError, match="given twice"):
        resolve_models(["m=sim:null", "m=sim:training-aware"], None, engine_names(), OPTIONS)
    with pytest.raises(ConfigError, match="collide"):
        resolve_models(["M=sim:null", "m=sim:training-aware"], None, engine_names(), OPTIONS)


def test_revision_is_part_of_the_run_identity_not_the_alias(tmp_path):
    first = engine_config(SessionConfig(), ModelEntry("m", "deepseek-ai/x", engine="vllm", revision="a"))
    second = engine_config(SessionConfig(), ModelEntry("m", "deepseek-ai/x", engine="vllm", revision="b"))
    assert first.options["revision"] == "a" and first != second


def test_changed_aliases_between_two_models_files(tmp_path):
    old, new = tmp_path / "old.toml", tmp_path / "new.toml"
    old.write_text('[models.a]\nmodel = "sim:null"\n[models.b]\nmodel = "sim:null"\n[models.c]\nmodel = "sim:null"\n')
    new.write_text('[models.a]\nmodel = "sim:training-aware"\n[models.b]\nmodel = "sim:null"\n'
                   '[models.d]\nmodel = "sim:null"\n')
    result = changed_aliases(load_models_file(old, engine_names(), OPTIONS), load_models_file(new, engine_names(),
                                                                                               OPTIONS))
    assert result == {"changed": ["a"], "added": ["d"], "removed": ["c"]}
