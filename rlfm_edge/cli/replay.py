"""`rlfm-edge replay` and `rlfm-edge calibrate-bins`: what a recorded MCAP log is good for.

``replay`` rebuilds the count statistics of a robot's runs (the offline mode's input, or the
way back for a robot whose statistics files were lost); ``calibrate-bins`` fits discretizer
bins to the observations the robot actually saw, so every bin gets its share of visits. Both
read log files, folders of log segments, or several of either (docs/robot-data.md).
"""

from __future__ import annotations

import argparse
import math

import yaml


def cmd_replay(args: argparse.Namespace) -> int:
    from rlfm_edge.logs import read_info, read_statistics, segments

    files = segments(args.log)
    info = read_info(files)
    stats = read_statistics(files)
    stats.save(args.out)
    print(f"{len(files)} log segment(s): {stats.n_transitions} transitions over "
          f"S={stats.n_states}, A={stats.n_actions} (horizon {info['horizon']}); wrote {args.out}")
    return 0


def parse_bins(text: str) -> str | int | list[int]:
    if text.strip() == "auto":
        return "auto"
    try:
        items = [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto, an integer or comma-separated integers, "
                                         f"got {text!r}") from None
    return items[0] if len(items) == 1 else items


def _recorded_discretizer(info: dict, n_dims: int):
    """The discretizer the log was recorded with, when it has one of the same width, else None."""
    from rlfm_edge.discretize import Discretizer

    if not info["discretizer_yaml"]:
        return None
    try:
        disc = Discretizer.from_config(yaml.safe_load(info["discretizer_yaml"]))
    except (ValueError, yaml.YAMLError):
        return None
    return disc if disc.n_dims == n_dims else None


def cmd_calibrate_bins(args: argparse.Namespace) -> int:
    from rlfm_edge.discretize import Discretizer, largest_bins
    from rlfm_edge.logs import read_info, read_observations

    obs = read_observations(args.log)
    info = read_info(args.log)
    recorded = _recorded_discretizer(info, obs.shape[1])
    names = [d.name for d in recorded.dimensions] if recorded else None
    # A run with absorbing end states (failure, goal) recorded them after its discretizer's.
    extra = info["n_states"] - recorded.n_states if recorded is not None else 0
    terminal = extra if 0 < extra <= 2 else 0
    if args.max_states is not None:
        limit, whose = args.max_states, "--max-states"
    else:
        from rlfm_edge.model.io import DEFAULT_MODEL_DIR, load_config

        limit = load_config(args.model or DEFAULT_MODEL_DIR).max_states
        whose = f"what {args.model or 'the shipped model'} serves"
    budget = limit - terminal
    why = f"at most {limit} states, {whose}" + (
        "; the log's terminal state takes one" if terminal == 1 else
        f"; the log's {terminal} terminal states take {terminal}" if terminal else "")
    bins = largest_bins(obs.shape[1], budget) if args.bins == "auto" else args.bins
    disc = Discretizer.fit_quantiles(obs, bins, names=names)
    if disc.n_states > budget:
        fit = largest_bins(obs.shape[1], budget)
        given = ",".join(map(str, bins)) if isinstance(bins, list) else bins
        raise ValueError(f"--bins {given}: {disc.n_states} states, more than the {budget} that "
                         f"fit ({why}); --bins auto picks {','.join(map(str, fit))} "
                         f"({math.prod(fit)} states); for a model that serves more, give "
                         "--model or --max-states")
    disc.save(args.out)
    print(f"{', '.join(args.log)}: {obs.shape[0]} observations of {obs.shape[1]} values -> bins "
          f"{list(disc.bins)} ({disc.n_states} states; {why}); wrote {args.out}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("replay", help="rebuild count statistics from an MCAP log",
                              description="Rebuild the count statistics of a robot's runs "
                              "from their MCAP logs: the offline mode's input, or the way back "
                              "for a robot whose statistics files were lost (docs/robot-data.md).")
    p.add_argument("log", nargs="+",
                   help="MCAP transition logs written by serve or demo: files or folders of segments")
    p.add_argument("--out", required=True, help="statistics file to write (.npz)")
    p.set_defaults(func=cmd_replay)

    p = subparsers.add_parser("calibrate-bins", help="quantile discretizer bins from an MCAP log",
                              description="Fit discretizer bins to the observations a robot "
                              "recorded, so that every bin gets its share of visits, within the "
                              "states the model serves. Put the result under `discretizer:` in "
                              "the robot config.")
    p.add_argument("log", nargs="+", help="MCAP transition logs: files or folders of segments")
    p.add_argument("--bins", type=parse_bins, default="auto",
                   help="bins per dimension: one integer, one per dimension (4,4,6,6), or auto: "
                   "the most states the model serves, as even as possible")
    p.add_argument("--max-states", type=int, default=None,
                   help="states the discretizer and the log's terminal states may take; "
                   "default: what --model serves")
    p.add_argument("--model", default=None,
                   help="model directory whose max_states limits the bins; default: the "
                   "shipped model")
    p.add_argument("--out", required=True, help="discretizer YAML to write")
    p.set_defaults(func=cmd_calibrate_bins)
