"""evalkit's options in pytest: namespaced flags everywhere, short forms only where evalkit is active,
and an ini key for each.

Installing evalkit loads its plugin in every pytest run of that environment (the ``pytest11``
entry point), so the plugin must not take generic names there: a project that merely shares
the environment keeps ``--model``, ``--seed``, ``--n`` and the rest for its own use. Hence:

- every option is always available as ``--evalkit-<name>`` (``--evalkit-model``,
  ``--evalkit-seed``, ...) and as the ini key ``evalkit_<name>`` (dashes as underscores);
- the short forms (``--model``, ``--seed``, ...) are added only in a project that activates
  evalkit: ``evalkit = true`` in its ini file, any ``evalkit_*`` ini key (``evalkit = false``
  keeps the namespaced flags only), or ``pytest_plugins = ("evalkit.pytest_plugin.activate",)``
  in its root conftest.py.

The flags are added once the initial conftests are loaded (a conftest may activate evalkit, or
define a generic flag of its own) and before pytest parses the command line. An activated
project whose conftest defines one of the short forms itself gets a usage error naming it.
"""

from __future__ import annotations

from typing import Any

import pytest

from ..options import Option, all_options, parse_bool

GROUP = "evalkit"
ACTIVATION_INI = "evalkit"
ACTIVATION_PLUGIN = "evalkit.pytest_plugin.activate"


def namespaced(flag: str) -> str:
    """``--model`` -> ``--evalkit-model``; a flag already namespaced (``--evalkit-html``) stays."""
    return flag if flag.startswith("--evalkit-") else "--evalkit-" + flag.removeprefix("--")


def ini_name(option: Option) -> str:
    """The flag's name, namespaced, dashes as underscores: ``--summary-column`` -> ``evalkit_summary_column``."""
    return namespaced(option.flag).removeprefix("--").replace("-", "_")


def add_ini_keys(parser: pytest.Parser) -> None:
    """Every option can be set in pytest.ini / pyproject.toml ([tool.pytest.ini_options]) under a
    namespaced key, so a project pins its models, suites and margins once; the command line wins."""
    parser.addini(ACTIVATION_INI, "true: add evalkit's short flags (--model, --seed, ...) beside --evalkit-*; "
                  "false: namespaced flags only (default: true when any evalkit_* key is set)", default=None)
    for option in all_options():
        parser.addini(ini_name(option), f"{option.help} (ini form of {namespaced(option.flag)})",
                      type="linelist" if option.action == "append" else "string", default=None)


def _ini_value(config: pytest.Config, name: str) -> Any:
    raw = config.getini(name)
    return None if raw is None or raw == [] or raw == "" else raw


def short_forms_active(config: pytest.Config) -> bool:
    """Whether this project activated evalkit (module docstring)."""
    explicit = _ini_value(config, ACTIVATION_INI)
    if explicit is not None:
        try:
            return parse_bool(explicit)
        except ValueError as exc:
            raise pytest.UsageError(f"evalkit: {config.inipath}: {ACTIVATION_INI} = {explicit!r}: {exc}") from None
    if config.pluginmanager.has_plugin(ACTIVATION_PLUGIN):
        return True
    return any(_ini_value(config, ini_name(option)) is not None for option in all_options())


def flags(option: Option, *, short: bool) -> list[str]:
    long = namespaced(option.flag)
    return [option.flag, long] if short and long != option.flag else [long]


def add_flags(parser: pytest.Parser, *, short: bool) -> None:
    group = parser.getgroup(GROUP, "evalkit: paired framing suites")
    taken = taken_flags(parser)
    for option in all_options():
        names = flags(option, short=short)
        clash = [name for name in names if name in taken]
        if clash:
            raise pytest.UsageError(
                f"evalkit: option {clash[0]} is already defined by this project (a conftest or another plugin); "
                f"evalkit is active here, so it adds its short flags: rename the project's option, or set "
                f"'{ACTIVATION_INI} = false' in the ini file and use {namespaced(option.flag)}")
        # Value flags default to None so that a flag given at its default value still overrides the
        # ini file; option_values fills in the default when neither the command line nor the ini sets it.
        kwargs: dict[str, Any] = {"dest": f"evalkit_{option.dest}", "help": option.help, "default": None}
        if option.action == "store_true":
            kwargs["action"], kwargs["default"] = "store_true", option.default
        else:
            kwargs["type"], kwargs["metavar"] = option.type, option.dest.upper()
            if option.action:
                kwargs["action"] = option.action
            if option.choices:
                kwargs["choices"] = option.choices
        group.addoption(*names, **kwargs)


def taken_flags(parser: pytest.Parser) -> set[str]:
    """Flags other plugins and conftests already added (pytest checks clashes within a group only,
    and an argparse clash across groups would surface as a crash while parsing)."""
    groups = [getattr(parser, "_anonymous", None), *getattr(parser, "_groups", [])]
    return {name for group in groups if group is not None for opt in group.options for name in opt.names()}


def value_flags() -> set[str]:
    """evalkit's flags that take a value, short and namespaced."""
    return {name for option in all_options() if option.action != "store_true" for name in flags(option, short=True)}


def _from_ini(config: pytest.Config, option: Option) -> Any:
    """The ini value of ``option`` converted as its flag's value would be; None when unset."""
    raw = _ini_value(config, ini_name(option))
    if raw is None:
        return None
    convert = option.type or str
    try:
        if option.action == "store_true":
            return parse_bool(raw)
        value = [convert(item) for item in raw] if option.action == "append" else convert(raw)
    except ValueError as exc:
        raise pytest.UsageError(f"evalkit: {config.inipath}: {ini_name(option)} = {raw!r}: {exc}") from None
    for item in value if option.action == "append" else [value]:
        if option.choices and item not in option.choices:
            raise pytest.UsageError(f"evalkit: {config.inipath}: {ini_name(option)} = {item!r}: choose from "
                                    f"{', '.join(option.choices)}")
    return value


VALUES_KEY = pytest.StashKey[dict[str, Any]]()
FROM_INI_KEY = pytest.StashKey[set[str]]()  # the dests whose value the ini file gave


def ini_origin(config: pytest.Config, flag: str | None) -> str | None:
    """Where the ini file set the option of ``flag`` ('PATH: evalkit_name'); None when the
    value came from the command line or the default (an error then names the flag alone)."""
    option_values(config)
    for option in all_options():
        if option.flag == flag and option.dest in config.stash.get(FROM_INI_KEY, set()):
            return f"{config.inipath}: {ini_name(option)}"
    return None


def option_value(config: pytest.Config, dest: str) -> Any:
    """One option's value, as ``option_values`` resolves it: what every part of the plugin reads."""
    return option_values(config)[dest]


def option_values(config: pytest.Config) -> dict[str, Any]:
    """Option values: the command line's, else the ini file's (``evalkit_<name>``), else the default."""
    if VALUES_KEY in config.stash:
        return config.stash[VALUES_KEY]
    values = {}
    from_ini: set[str] = set()
    for option in all_options():
        value = config.getoption(f"evalkit_{option.dest}")
        if (option.action == "store_true" and value == option.default) or value is None:
            # not given on the command line (a switch not given: the ini may turn it on)
            ini_value = _from_ini(config, option)
            if ini_value is not None:
                value = ini_value
                from_ini.add(option.dest)
            elif value is None:
                value = option.default
        values[option.dest] = value
    config.stash[VALUES_KEY] = values
    config.stash[FROM_INI_KEY] = from_ini
    return values
