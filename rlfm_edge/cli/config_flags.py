"""Command-line flags as a view of the robot configuration (``rlfm_edge.runtime.robot_config``).

``--set NAME=VALUE`` sets any setting by its YAML name (the value is read as YAML: ``null``,
``0.02``, ``goal``); ``--backend``, ``--precision``, ``--model``, ``--stats`` and ``--log``
are short forms of ``backend``, ``precision``, ``model_file_path``, ``statistics.path`` and
``log``. A flag given overrides the robot YAML; one not given leaves it as it is.
"""

from __future__ import annotations

import argparse

import yaml

from rlfm_edge.runtime.robot_config import BY_NAME

SHORT_FORMS = {"backend": "backend", "precision": "precision", "model": "model_file_path",
               "stats": "statistics.path", "log": "log"}


def add_engine_options(p: argparse.ArgumentParser, defaults: dict[str, str] | None = None) -> None:
    """``--backend``, ``--precision``, ``--model``; not given, the robot config's value stands,
    unless ``defaults`` gives the command's own (shown by --help)."""
    defaults = defaults or {}
    for flag in ("backend", "precision", "model"):
        s = BY_NAME[SHORT_FORMS[flag]]
        unset = ("" if flag in defaults else f"; not given: the config's, else "
                 f"{'null' if s.default is None else s.default}")
        p.add_argument(f"--{flag}", default=defaults.get(flag),
                       help=f"{s.help} (setting {s.name}: {s.expected()}{unset})")


def add_set_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="set a robot-config setting by its YAML name (repeatable), e.g. --set "
                   "max_policy_lag=0 --set statistics.save_every_s=null; see docs/configuration.md")


def overrides(args: argparse.Namespace, short_forms=tuple(SHORT_FORMS)) -> dict[str, object]:
    """Setting name -> value for ``--set`` and the ``short_forms`` given on the command line."""
    values: dict[str, object] = {}
    for item in getattr(args, "set", []):
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--set: expected NAME=VALUE, got {item!r}")
        try:
            values[name.strip()] = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"--set {name}: the value is not YAML ({exc})") from None
    for flag in short_forms:
        if getattr(args, flag, None) is not None:
            values[SHORT_FORMS[flag]] = getattr(args, flag)
    return values
