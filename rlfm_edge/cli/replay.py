"""`rlfm-edge replay` and `rlfm-edge calibrate-bins`: what a recorded MCAP log is good for.

``replay`` rebuilds the count statistics of a robot's runs (the offline mode's input, or the
way back for a robot whose statistics files were lost); ``calibrate-bins`` fits discretizer
bins to the observations the robot actually saw, so every bin gets its share of visits. Both
read log files, folders of log segments, or several of either (docs/robot-data.md).
"""

from __future__ import annotations

import argparse

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
    print(f"{', '.join(args.log)}: {obs.shape[0]} observations of {obs.shape[1]} values -> bins "
          f"{list(disc.bins)} ({disc.n_states} states); wrote {args.out}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("replay", help="rebuild count statistics from an MCAP log",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("log", nargs="+",
                   help="MCAP transition logs written by serve or demo: files or folders of segments")
    p.add_argument("--out", required=True, help="statistics file to write (.npz)")
    p.set_defaults(func=cmd_replay)

    p = subparsers.add_parser("calibrate-bins", help="quantile discretizer bins from an MCAP log",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("log", nargs="+", help="MCAP transition logs: files or folders of segments")
    p.add_argument("--bins", type=parse_bins, default=6,
                   help="bins per dimension: one integer, or one per dimension (4,4,6,6)")
    p.add_argument("--max-states", type=int, default=None,
                   help="refuse bins giving more states than this (the model's max_states)")
    p.add_argument("--out", required=True, help="discretizer YAML to write")
    p.set_defaults(func=cmd_calibrate_bins)
