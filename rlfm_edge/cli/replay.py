"""`rlfm-edge replay` and `rlfm-edge calibrate-bins`: what a recorded MCAP log is good for.

``replay`` rebuilds the count statistics of a run (the offline mode's input, or a fresh
start for a robot whose statistics file was lost); ``calibrate-bins`` fits discretizer bins
to the observations the robot actually saw, so every bin gets its share of visits.
"""

from __future__ import annotations

import argparse

import yaml


def cmd_replay(args: argparse.Namespace) -> int:
    from rlfm_edge.logs import read_info, read_statistics

    info = read_info(args.log)
    stats = read_statistics(args.log)
    stats.save(args.out)
    print(f"{args.log}: {stats.n_transitions} transitions over S={stats.n_states}, "
          f"A={stats.n_actions} (horizon {info['horizon']}); wrote {args.out}")
    return 0


def parse_bins(text: str) -> int | list[int]:
    try:
        items = [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or comma-separated integers, "
                                         f"got {text!r}") from None
    return items[0] if len(items) == 1 else items


def cmd_calibrate_bins(args: argparse.Namespace) -> int:
    from rlfm_edge.discretize import Discretizer
    from rlfm_edge.logs import read_info, read_observations

    obs = read_observations(args.log)
    names = None
    recorded = read_info(args.log)["discretizer_yaml"]
    if recorded:
        dims = (yaml.safe_load(recorded) or {}).get("dimensions") or []
        if len(dims) == obs.shape[1]:
            names = [str(d.get("name", f"x{i}")) for i, d in enumerate(dims)]
    disc = Discretizer.fit_quantiles(obs, args.bins, names=names)
    if args.max_states is not None:
        disc.check_fits(args.max_states)
    disc.save(args.out)
    print(f"{args.log}: {obs.shape[0]} observations of {obs.shape[1]} values -> bins "
          f"{list(disc.bins)} ({disc.n_states} states); wrote {args.out}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("replay", help="rebuild count statistics from an MCAP log",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("log", help="MCAP transition log written by serve or the ROS 2 node")
    p.add_argument("--out", required=True, help="statistics file to write (.npz)")
    p.set_defaults(func=cmd_replay)

    p = subparsers.add_parser("calibrate-bins", help="quantile discretizer bins from an MCAP log",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("log", help="MCAP transition log")
    p.add_argument("--bins", type=parse_bins, default=6,
                   help="bins per dimension: one integer, or one per dimension (4,4,6,6)")
    p.add_argument("--max-states", type=int, default=None,
                   help="refuse bins giving more states than this (the model's max_states)")
    p.add_argument("--out", required=True, help="discretizer YAML to write")
    p.set_defaults(func=cmd_calibrate_bins)
