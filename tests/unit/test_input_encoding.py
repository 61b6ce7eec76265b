"""TOML inputs that are not UTF-8 are one error naming the file, never a UnicodeDecodeError."""

from __future__ import annotations

import pytest

from evalkit import cli
from evalkit.engines import engine_names
from evalkit.engines.sim import load_profile
from evalkit.errors import ConfigError
from evalkit.models import load_models_file
from evalkit.options import ENGINE
from evalkit.testing.organisms import OrganismConfig

LATIN1_COMMENT = "# café\n".encode("latin-1")  # 0xe9 alone is not UTF-8


@pytest.mark.parametrize("load, body", [
    (lambda p: load_models_file(p, engine_names(), {o.dest: o for o in ENGINE}), b'[models.m]\nmodel = "sim:null"\n'),
    (lambda p: load_profile(str(p)), b'[profile]\nname = "x"\n'),
    (lambda p: OrganismConfig.load(p), b"[plan]\nseed = 0\n"),
], ids=["models-file", "sim-profile", "organism-config"])
def test_a_toml_file_in_another_encoding_is_an_error_naming_the_file(tmp_path, load, body):
    path = tmp_path / "latin1.toml"
    path.write_bytes(body + LATIN1_COMMENT)
    with pytest.raises(ConfigError, match=r"latin1\.toml.*not UTF-8"):
        load(path)


def test_the_cli_says_so_in_one_line(tmp_path, capsys):
    path = tmp_path / "models.toml"
    path.write_bytes(b'[models.m]\nmodel = "sim:null"\n' + LATIN1_COMMENT)
    assert cli.main(["models", "changed", str(path), str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "models.toml" in err and "not UTF-8" in err


def test_a_byte_order_mark_is_read_as_utf_8_like_the_csv_files(tmp_path):
    # the CSV loaders accept the BOM Windows editors write; these said "Invalid statement (at line 1, column 1)"
    from importlib import resources

    from evalkit.framings import load_framing_set

    bom = b"\xef\xbb\xbf"
    files = {"framings.toml": (resources.files("evalkit.data.framings") / "study-chat.toml").read_bytes(),
             "profile.toml": (resources.files("evalkit.data.profiles") / "study-pilot.toml").read_bytes(),
             "models.toml": b'[models.m]\nmodel = "sim:null"\n',
             "organisms.toml": (resources.files("evalkit.data") / "organisms.toml").read_bytes()}
    loaders = {"framings.toml": load_framing_set, "profile.toml": lambda p: load_profile(str(p)),
               "models.toml": lambda p: load_models_file(p, engine_names(), {o.dest: o for o in ENGINE}),
               "organisms.toml": OrganismConfig.load}
    for name, body in files.items():
        (tmp_path / "plain").mkdir(exist_ok=True)
        (tmp_path / "bom").mkdir(exist_ok=True)
        (tmp_path / "plain" / name).write_bytes(body)
        (tmp_path / "bom" / name).write_bytes(bom + body)
        plain, with_bom = loaders[name](tmp_path / "plain" / name), loaders[name](tmp_path / "bom" / name)
        assert repr(plain).replace("/plain/", "/bom/") == repr(with_bom), name
