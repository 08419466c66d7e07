"""`rlfm-edge` command line: each command group lives in its own module here."""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys

from rlfm_edge.interrupt import Interrupted, stop_signals

# Each module defines register(subparsers); its handlers take args and return an exit code.
COMMAND_MODULES: list[str] = [
    "bench", "info", "train", "export", "calibrate", "build_engine", "serve", "demo", "replay",
]


class HelpFormatter(argparse.HelpFormatter):
    """Adds each option's default to its help line, so ``--help`` shows every default.

    Options without a meaningful default (None, a flag's False, an empty list) are left as
    they are; their help says what happens when they are not given.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("%(default)" in text or not action.option_strings or default is argparse.SUPPRESS
                or default is None or default is False or default == []):
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """The parser class of every command and subcommand: they share the help formatter."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="rlfm-edge",
        description="A reinforcement-learning foundation model for robots: it acts in context "
        "from the counts of what it has seen, with no training on the robot.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"rlfm_edge.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        with stop_signals():
            return int(args.func(args) or 0)
    except KeyboardInterrupt as exc:  # Interrupted, or a Ctrl-C before the handlers were in
        stop = exc if isinstance(exc, Interrupted) else Interrupted(signal.SIGINT)
        print(stop.line(f"rlfm-edge {args.command}"), file=sys.stderr)
        return stop.exit_code
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"rlfm-edge {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
