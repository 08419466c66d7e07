"""`rlfm-edge --help` and every subcommand's: a description, help on every option, every default shown."""

from __future__ import annotations

import argparse
import re

import pytest

from rlfm_edge.cli import build_parser


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(path, parser) for every command and subcommand, depth first."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from _commands(sub, (*path, name))


COMMANDS = list(_commands(build_parser()))


def _options(parser: argparse.ArgumentParser):
    return [a for a in parser._actions
            if a.option_strings and not isinstance(a, argparse._HelpAction)]


def _shown_default(action: argparse.Action) -> bool:
    """Whether --help has a default to show: not for flags, empty lists or "not given" (None)."""
    return action.default not in (None, False, [], argparse.SUPPRESS)


def test_the_walk_finds_every_command_the_design_lists():
    names = {path for path, _ in COMMANDS}
    for command in ("demo", "bench", "train", "export", "calibrate", "build-engine",
                    "calibrate-bins", "replay", "serve", "info"):
        assert (command,) in names
    for bench in ("online", "offline", "stats", "latency", "loop"):
        assert ("bench", bench) in names


@pytest.mark.parametrize("path, parser", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_every_command_has_a_description(path, parser):
    assert parser.description and parser.description.strip(), f"rlfm-edge {' '.join(path)}"
    assert " ".join(parser.description.split()) in " ".join(parser.format_help().split())


@pytest.mark.parametrize("path, parser", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_every_option_has_help_and_help_shows_every_default(path, parser):
    text = " ".join(parser.format_help().split())
    for action in _options(parser):
        option = "/".join(action.option_strings)
        assert action.help and action.help.strip(), f"rlfm-edge {' '.join(path)} {option}: no help"
        if _shown_default(action):
            assert f"(default: {action.default})" in text, \
                f"rlfm-edge {' '.join(path)} {option}: default {action.default!r} not in --help"


def test_a_command_default_changed_by_set_defaults_is_the_one_help_shows():
    demo = dict(COMMANDS)[("demo",)]
    backend = next(a for a in _options(demo) if "--backend" in a.option_strings)
    assert f"(default: {backend.default})" in " ".join(demo.format_help().split())
    assert backend.default == demo.parse_args([]).backend


def test_bench_help_lists_every_registered_benchmark():
    bench = dict(COMMANDS)[("bench",)]
    text = bench.format_help()
    subcommands = [path[1] for path, _ in COMMANDS if len(path) == 2 and path[0] == "bench"]
    assert len(subcommands) >= 5
    for name in subcommands:
        assert re.search(rf"\n    {re.escape(name)}\s", text), f"bench --help does not list {name}"
