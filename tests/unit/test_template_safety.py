"""Templates are data, so they are validated like data: plain ``{name}`` fields from a
whitelist, nothing else. A format spec can allocate gigabytes (``{behavior:>300000000}``),
a nested field is a traceback, an attribute lookup reaches Python objects."""

import json

import pytest

from evalkit.errors import ConfigError
from evalkit.framings import parse_framing_set
from evalkit.judges.harmbench import load_templates
from evalkit.judges.llm import load_rubric
from tests.unit.test_judge_llm import RUBRIC

pytestmark = pytest.mark.unit

ABUSE = ["{behavior:>300000000}", "{behavior:{request}}", "{behavior!r}", "{behavior.__class__}",
         "{behavior[0]}", "{behavior", "{behavior}}", "{0}", "{}", "{request.__init__.__globals__}"]


def framing_set(user_template: str, raw_template: str = "{system}\n\n{user}") -> str:
    return f"""
[set]
id = "t"
format = "raw"
raw_template = '''{raw_template}'''

[framings.free]
tier = "free"
system = "free"
user_template = '''{user_template}'''

[framings.paid]
tier = "paid"
system = "paid"
user_template = "{{behavior}}"

[pairs.p]
free = "free"
paid = "paid"
"""


@pytest.mark.parametrize("template", ABUSE)
def test_framing_user_templates_allow_plain_fields_only(template):
    with pytest.raises(ConfigError, match=r"f\.toml: \[framings\.free\]\.user_template") as info:
        parse_framing_set(framing_set(template), "f.toml")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("template", ["{system}{user:>99999999}", "{system!s}{user}", "{system.x}{user}"])
def test_raw_templates_allow_plain_fields_only(template):
    with pytest.raises(ConfigError, match=r"raw_template"):
        parse_framing_set(framing_set("{behavior}", template), "f.toml")


def test_plain_templates_with_literal_braces_still_load():
    framings = parse_framing_set(framing_set("{{json}} {behavior} {request}"), "f.toml")
    assert framings.framings[0].user_template == "{{json}} {behavior} {request}"


@pytest.mark.parametrize("field", ["{generation.__class__}", "{generation:>99999999}", "{behavior!a}",
                                   "{context[0]}", "{generation"])
def test_harmbench_classifier_templates_allow_plain_fields_only(field, tmp_path):
    path = tmp_path / "cls.toml"
    path.write_text(f"""[template]
standard = '''{{behavior}} {{generation}} {field}'''
contextual = '''{{behavior}} {{generation}} {{context}}'''
""")
    with pytest.raises(ConfigError, match="standard") as info:
        load_templates(str(path))
    assert str(path) in str(info.value)


@pytest.mark.parametrize("user", ["{behavior} {response.__class__}", "{behavior:>999999} {response}",
                                  "{response!r}", "{response"])
def test_rubric_templates_allow_plain_fields_only(user, tmp_path):
    path = tmp_path / "rubric.toml"
    path.write_text(RUBRIC.replace('user = "{behavior} / {response}"', f"user = {json.dumps(user)}"))
    with pytest.raises(ConfigError, match=r"\[rubric\]\.user"):
        load_rubric(str(path))
