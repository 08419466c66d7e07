"""`rlfm-edge bench latency`: policy-refresh latency per backend, precision and state count.

A refresh is one ``engine.policy(stats, horizon)`` call: feature building, padding, the
model and the copy back, i.e. what the robot waits for. The model-only time (padded
inputs ready) and the features' (``build_features``: the statistics' graph and the plan
features' H-step backward induction, on the CPU for every backend) are reported beside it,
timed in turn with it call by call, so a slow spell of the machine hits all three columns
alike. Every configuration is timed in the same process on the same statistics, so
backends compare fairly within one run.
"""

from __future__ import annotations

import argparse
import resource
import shlex
from pathlib import Path

import numpy as np

from rlfm_edge.cli.bench import add_record_options, csv_ints, csv_list, record
from rlfm_edge.inference.timing import refresh_stats, time_interleaved_ms


def _model_only(engine, stats, horizon: int):
    """A zero-argument call of the model alone on prepared inputs, or None if the backend has none."""
    from rlfm_edge.model.features import build_features, pad_features

    if hasattr(engine, "dense") and not engine.cuda_graph:  # torch eager: padded to S only
        import torch

        k = engine.max_successors
        inputs = pad_features([build_features(stats, horizon, k)], stats.n_states, engine.max_actions, k)
        tensors = engine.to_device(inputs.as_dict())
        sync = torch.cuda.synchronize if engine.device.type == "cuda" else (lambda: None)

        def run():
            with torch.inference_mode():
                out = engine.dense(*tensors)
            sync()  # GPU time, not launch time
            return out
        return run
    if hasattr(engine, "run_padded"):  # static shapes: padded to Smax, copies in and out included
        inputs = pad_features([build_features(stats, horizon, engine.max_successors)],
                              engine.max_states, engine.max_actions, engine.max_successors).as_dict()
        return lambda: engine.run_padded(inputs)
    return None


def matmul_mflops(engine, n_states: int, actions: int, horizon: int, seed: int) -> float:
    """Matrix-product work of one call of a torch ``engine``'s model on statistics padded to
    ``n_states`` (torch's FlopCounterMode, a multiply-add = 2 FLOP): the floor under the
    model-only time that no runtime trick removes."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from rlfm_edge.model.features import build_features, pad_features

    stats = refresh_stats(np.random.default_rng(seed), n_states, actions)
    k = engine.max_successors
    inputs = pad_features([build_features(stats, horizon, k)], n_states, engine.max_actions, k)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        engine.dense(*engine.to_device(inputs.as_dict()))
    return counter.get_total_flops() / 1e6


def _cpu_torch_engine(model):
    """The model on torch's CPU backend, or None where torch is not installed."""
    try:
        from rlfm_edge.inference.torch_backend import TorchEngine
    except ImportError:
        return None
    return TorchEngine(model, device="cpu")


def _gpu_name() -> str | None:
    """The CUDA device torch would use, if torch is installed and sees one."""
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.get_device_name() if torch.cuda.is_available() else None


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_latency(model, backends, precisions, states, actions: int, horizon: int, repeats: int,
                warmup: int, seed: int) -> tuple[list[dict], list[str]]:
    """One row per (backend, precision, S) that runs here; notes for those that do not."""
    from rlfm_edge.inference import make_engine
    from rlfm_edge.model.features import build_features

    rows, notes = [], []
    for backend in backends:
        for precision in precisions:
            try:
                engine = make_engine(backend, model=model, precision=precision)
            except (ValueError, RuntimeError, OSError) as exc:
                notes.append(f"{backend}/{precision}: skipped ({exc})")
                continue
            for n_states in states:
                if n_states > engine.max_states or actions > engine.max_actions:
                    notes.append(f"{backend}/{precision} S={n_states}: above the export's "
                                 f"Smax={engine.max_states}, Amax={engine.max_actions}")
                    continue
                stats = refresh_stats(np.random.default_rng(seed), n_states, actions)
                fns = {"refresh_ms": lambda e=engine, s=stats: e.policy(s, horizon),
                       "features_ms": lambda s=stats, k=engine.max_successors: build_features(s, horizon, k)}
                if model_fn := _model_only(engine, stats, horizon):
                    fns["model_ms"] = model_fn
                times = time_interleaved_ms(fns, repeats, warmup)
                rows.append({"backend": backend, "precision": precision, "S": n_states, "A": actions,
                             "model_ms": None, **times, "peak_rss_mb": _peak_rss_mb()})
    return rows, notes


def latency_table(rows: list[dict]) -> str:
    header = ["backend", "precision", "S x A", "refresh median (ms)", "p99", "max", "model-only median (ms)",
              "features median (ms)", "peak RSS (MB)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        t = r["refresh_ms"]
        model = f"{np.median(r['model_ms']):.2f}" if r["model_ms"] is not None else "—"
        lines.append(f"| {r['backend']} | {r['precision']} | {r['S']} x {r['A']} | {np.median(t):.2f} | "
                     f"{np.percentile(t, 99):.2f} | {t.max():.2f} | {model} | "
                     f"{np.median(r['features_ms']):.2f} | {r['peak_rss_mb']:.0f} |")
    return "\n".join(lines) + "\n"


def plot_histogram(rows: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({r["S"] for r in rows})
    fig, axes = plt.subplots(1, len(sizes), figsize=(4.5 * len(sizes), 3.5), squeeze=False)
    for ax, n_states in zip(axes[0], sizes, strict=True):
        chosen = [r for r in rows if r["S"] == n_states]
        lo = min(r["refresh_ms"].min() for r in chosen)
        hi = max(r["refresh_ms"].max() for r in chosen)
        bins = np.geomspace(max(lo, 1e-3), max(hi, lo * 1.01), 40)
        for r in chosen:
            ax.hist(r["refresh_ms"], bins=bins, histtype="step", label=f"{r['backend']}/{r['precision']}")
        ax.set_xscale("log")
        ax.set_title(f"S={n_states}, A={chosen[0]['A']}")
        ax.set_xlabel("policy refresh (ms)")
        ax.set_ylabel("calls")
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def cmd_latency(args: argparse.Namespace) -> int:
    import os

    backends, precisions = csv_list(args.backends), csv_list(args.precisions)
    states = csv_ints("states", args.states)
    if args.repeats < 1 or args.warmup < 0:
        raise ValueError(f"--repeats must be >= 1 and --warmup >= 0, got {args.repeats}, {args.warmup}")
    rows, notes = run_latency(args.model, backends, precisions, states, args.actions, args.horizon,
                              args.repeats, args.warmup, args.seed)
    if not rows:
        raise RuntimeError("no backend/precision could run: " + "; ".join(notes))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    png = plot_histogram(rows, out / "latency_histogram.png")
    if torch_engine := _cpu_torch_engine(args.model):
        flops = {n: matmul_mflops(torch_engine, n, args.actions, args.horizon, args.seed)
                 for n in states if n <= max(r["S"] for r in rows)}
        notes.append("Matrix products per model call, padded to S (torch eager pads to S, the static "
                     "ONNX and TensorRT exports to Smax): " +
                     ", ".join(f"S={n}: {f:.3g} MFLOP" for n, f in flops.items()) + ".")
    table = latency_table(rows)
    print(table)
    for note in notes:
        print(note)
    machine = f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at the end"
    if gpu := _gpu_name():
        machine += f"; GPU {gpu} (torch runs there, others on the CPU unless they say)"
    print(f"{args.repeats} calls per row after {args.warmup} warm-up calls on {machine}; histogram {png}")
    command = ["rlfm-edge", "bench", "latency", "--backends", ",".join(backends),
               "--precisions", ",".join(precisions), "--states", ",".join(map(str, states)),
               "--actions", str(args.actions), "--repeats", str(args.repeats), "--out", args.out]
    if args.model:
        command += ["--model", str(args.model)]
    body = (f"{table}\n{args.repeats} calls per row on {machine}; peak RSS is the process's, "
            f"cumulative over rows. " + " ".join(notes) + f"\nHistogram: `{png}`.")
    record(args, f"Policy refresh latency ({', '.join(backends)})", shlex.join(command), body)
    return 0


def register(bench_subparsers) -> None:
    p = bench_subparsers.add_parser("latency", help="policy-refresh latency per backend and precision",
                                    description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="model directory (default: the shipped model)")
    p.add_argument("--backends", default="torch,onnxruntime", help="comma-separated backends")
    p.add_argument("--precisions", default="fp32,int8",
                   help="comma-separated precisions; pairs a backend lacks are skipped and noted")
    p.add_argument("--states", default="16,64,256", help="comma-separated state counts S")
    p.add_argument("--actions", type=int, default=8, help="action count A")
    p.add_argument("--horizon", type=int, default=20, help="horizon given to the model")
    p.add_argument("--repeats", type=int, default=200, help="timed calls per row")
    p.add_argument("--warmup", type=int, default=10, help="untimed calls first")
    p.add_argument("--seed", type=int, default=0, help="seed of the random statistics")
    p.add_argument("--out", default="results/latency", help="folder for the histogram PNG")
    add_record_options(p)
    p.set_defaults(func=cmd_latency)
