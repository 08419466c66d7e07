"""`rlfm-edge bench latency`: policy-refresh latency per backend, precision and state count.

A refresh is one ``engine.policy(stats, horizon)`` call: what the robot waits for. It is
split into features (``build_features`` then ``pad_features``: the statistics' graph and
the plan features' H-step backward induction, on the CPU for every backend) and the model
alone (padded inputs ready, copies in and out included), each timed in turn with the whole
call, call by call, so that a slow spell of a shared machine hits every column alike. The
whole call's CPU time in the calling thread is reported too: with one intra-op thread the
CPU backends compute there, and it counts what the call did rather than how long other
processes held the core.

The model's matrix products are counted (torch's FlopCounterMode on the dense twin, a
multiply-add = 2 FLOP) and set against the machine's own fp32 GEMM rate with the same
thread count, timed right after each row (a square product and one of the model's own
shape; not between the calls, where their megabytes would evict the refresh's data from
the caches): the share says how far the model is from what its arithmetic alone would cost.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import time
from pathlib import Path

import numpy as np

from rlfm_edge.cli.bench import add_record_options, csv_ints, csv_list, record
from rlfm_edge.inference.timing import refresh_stats, time_interleaved_ms

GEMM_SHAPES = {"1024 x 1024 x 1024": (1024, 1024, 1024), "2048 x 64 x 64 (the model's)": (2048, 64, 64)}


def _on_cpu(engine) -> bool:
    """Whether the engine's model runs on the CPU (the GEMM rate it is compared with is the CPU's)."""
    if engine.backend == "torch":
        return engine.device.type == "cpu"
    if engine.backend == "onnxruntime":
        return engine.session.get_providers()[0] == "CPUExecutionProvider"
    return False


def _padded(engine, stats, horizon: int):
    """The features and padded inputs of one refresh, as the engine builds them: at the
    statistics' own size, but at the model's full size for a torch CUDA graph."""
    from rlfm_edge.model.features import build_features, pad_features

    graph = engine.backend == "torch" and engine.cuda_graph
    size = (engine.max_states, engine.max_actions) if graph else (stats.n_states, stats.n_actions)
    return pad_features([build_features(stats, horizon, engine.max_successors)], *size,
                        engine.max_successors).as_dict()


def _model_only(engine, stats, horizon: int):
    """A zero-argument call of the model alone on prepared inputs, or None if the backend has none."""
    inputs = _padded(engine, stats, horizon)
    if engine.backend == "torch" and not engine.cuda_graph:
        import torch

        tensors = engine.to_device(inputs)
        sync = torch.cuda.synchronize if engine.device.type == "cuda" else (lambda: None)

        def run():
            with torch.inference_mode():
                out = engine.dense(*tensors)
            sync()  # GPU time, not launch time
            return out
        return run
    if hasattr(engine, "run_padded"):
        return lambda: engine.run_padded(inputs)
    return None


def model_mflop(dense, stats, horizon: int, max_successors: int) -> float:
    """Matrix-product work of one call of the dense twin ``dense`` on these statistics, padded
    to their own size (torch's FlopCounterMode, a multiply-add = 2 FLOP)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from rlfm_edge.model.features import build_features, pad_features

    inputs = pad_features([build_features(stats, horizon, max_successors)], stats.n_states, stats.n_actions,
                          max_successors)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        dense(*(torch.from_numpy(v) for v in inputs.as_dict().values()))
    return counter.get_total_flops() / 1e6


def gemm_calls(threads: int) -> dict[str, object]:
    """Zero-argument fp32 matrix products, one per GEMM_SHAPES entry, on ``threads`` intra-op
    threads (torch, else numpy's BLAS, whose threads this does not set)."""
    rng = np.random.default_rng(0)
    try:
        import torch

        torch.set_num_threads(threads)
        matmul, convert = torch.matmul, torch.from_numpy
    except ImportError:
        matmul, convert = np.matmul, np.asarray
    calls = {}
    for name, (m, k, n) in GEMM_SHAPES.items():
        a = convert(rng.standard_normal((m, k), dtype=np.float32))
        b = convert(rng.standard_normal((k, n), dtype=np.float32))
        calls[name] = lambda a=a, b=b: matmul(a, b)
    return calls


def gemm_gflops(threads: int, repeats: int) -> dict[str, float]:
    """The fp32 GEMM rates (GFLOP/s) of GEMM_SHAPES here and now, median of ``repeats`` calls."""
    times = time_interleaved_ms(gemm_calls(threads), repeats, warmup=2)
    return {name: 2 * m * k * n / np.median(times[name]) / 1e6 for name, (m, k, n) in GEMM_SHAPES.items()}


def _cpu_torch_dense(model):
    """The dense twin of the model on the CPU, or None where torch is not installed."""
    try:
        from rlfm_edge.model.dense import DenseGAT
        from rlfm_edge.model.io import load_model
    except ImportError:
        return None
    return DenseGAT(load_model(model)).eval()


def _gpu_name() -> str | None:
    """The CUDA device torch would use, if torch is installed and sees one."""
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.get_device_name() if torch.cuda.is_available() else None


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _engine_kw(backend: str, threads: int) -> dict:
    return {"threads": threads} if backend in ("torch", "onnxruntime") else {}


def run_latency(model, backends, precisions, states, actions: int, horizon: int, repeats: int,
                warmup: int, seed: int, threads: int) -> tuple[list[dict], list[str]]:
    """One row per (backend, precision, S) that runs here; notes for those that do not."""
    from rlfm_edge.inference import make_engine

    rows, notes = [], []
    for backend in backends:
        for precision in precisions:
            try:
                kw = _engine_kw(backend, threads)
                engine = make_engine(backend, model=model, precision=precision, **kw)
            except (ValueError, RuntimeError, OSError) as exc:
                notes.append(f"{backend}/{precision}: skipped ({exc})")
                continue
            for n_states in states:
                if n_states > engine.max_states or actions > engine.max_actions:
                    notes.append(f"{backend}/{precision} S={n_states}: above the export's "
                                 f"Smax={engine.max_states}, Amax={engine.max_actions}")
                    continue
                stats = refresh_stats(np.random.default_rng(seed), n_states, actions)
                cpu: list[float] = []

                def refresh(e=engine, s=stats, cpu=cpu):
                    start = time.thread_time()
                    e.policy(s, horizon)
                    cpu.append(1e3 * (time.thread_time() - start))
                fns = {"refresh_ms": refresh,
                       "features_ms": lambda e=engine, s=stats: _padded(e, s, horizon)}
                if model_fn := _model_only(engine, stats, horizon):
                    fns["model_ms"] = model_fn
                times = time_interleaved_ms(fns, repeats, warmup)
                times["gemm_gflops"] = gemm_gflops(threads, max(5, repeats // 10))
                rows.append({"backend": backend, "precision": precision, "S": n_states, "A": actions,
                             "H": horizon, "cpu": _on_cpu(engine), "model_ms": None, **times,
                             "refresh_cpu_ms": np.array(cpu[warmup:]), "peak_rss_mb": _peak_rss_mb()})
    return rows, notes


def summarize(rows: list[dict], mflop: dict[int, float]) -> list[dict]:
    """Medians and tails per row; the model's rate and, where it runs on the CPU, its share of
    the best GEMM rate the machine reached beside it."""
    out = []
    for r in rows:
        gemm = r["gemm_gflops"]
        peak = max(gemm.values())
        model = float(np.median(r["model_ms"])) if r["model_ms"] is not None else None
        flop = mflop.get(r["S"]) if r["cpu"] else None
        rate = flop / model if flop is not None and model else None  # MFLOP / ms = GFLOP/s
        out.append({k: r[k] for k in ("backend", "precision", "S", "A", "H", "cpu")} | {
            "refresh_median_ms": float(np.median(r["refresh_ms"])),
            "refresh_p99_ms": float(np.percentile(r["refresh_ms"], 99)),
            "refresh_max_ms": float(np.max(r["refresh_ms"])),
            "refresh_cpu_median_ms": float(np.median(r["refresh_cpu_ms"])),
            "features_median_ms": float(np.median(r["features_ms"])),
            "model_median_ms": model, "model_mflop": flop, "model_gflops": rate,
            "gemm_gflops": gemm, "gemm_share": rate / peak if rate is not None else None,
            "peak_rss_mb": r["peak_rss_mb"]})
    return out


def _fmt(value, digits: int = 2, suffix: str = "") -> str:
    return "—" if value is None else f"{value:.{digits}f}{suffix}"


def latency_table(summary: list[dict]) -> str:
    header = ["backend", "precision", "S x A", "refresh median (ms)", "p99", "max", "refresh CPU median (ms)",
              "features median (ms)",
              "model median (ms)", "model MFLOP", "model GFLOP/s", "share of GEMM rate", "peak RSS (MB)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in summary:
        share = None if r["gemm_share"] is None else 100 * r["gemm_share"]
        cells = [r["backend"], r["precision"], f"{r['S']} x {r['A']}", _fmt(r["refresh_median_ms"]),
                 _fmt(r["refresh_p99_ms"]), _fmt(r["refresh_max_ms"]), _fmt(r["refresh_cpu_median_ms"]),
                 _fmt(r["features_median_ms"]),
                 _fmt(r["model_median_ms"]), _fmt(r["model_mflop"], 1), _fmt(r["model_gflops"], 1),
                 _fmt(share, 1, "%"), f"{r['peak_rss_mb']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_latency(rows: list[dict], path: Path) -> Path:
    """Left: median refresh (wall and thread CPU), features and model time against S per
    configuration; right: the distribution of refresh times at the largest S."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (by_size, hist) = plt.subplots(1, 2, figsize=(11, 4))
    configs = list(dict.fromkeys((r["backend"], r["precision"]) for r in rows))
    for i, config in enumerate(configs):
        chosen = sorted((r for r in rows if (r["backend"], r["precision"]) == config), key=lambda r: r["S"])
        sizes = [r["S"] for r in chosen]
        color = f"C{i}"
        label = "/".join(config)
        by_size.plot(sizes, [np.median(r["refresh_ms"]) for r in chosen], "o-", color=color,
                     label=f"{label} refresh")
        by_size.plot(sizes, [np.median(r["refresh_cpu_ms"]) for r in chosen], "o:", color=color, alpha=0.7,
                     label=f"{label} refresh, thread CPU")
        if all(r["model_ms"] is not None for r in chosen):
            by_size.plot(sizes, [np.median(r["model_ms"]) for r in chosen], "s--", color=color, alpha=0.7,
                         label=f"{label} model")
    first = [r for r in rows if (r["backend"], r["precision"]) == configs[0]]
    first.sort(key=lambda r: r["S"])
    by_size.plot([r["S"] for r in first], [np.median(r["features_ms"]) for r in first], "^:", color="k",
                 label="features")
    by_size.set_xscale("log", base=2)
    by_size.set_yscale("log")
    by_size.set_xlabel(f"states S (A = {rows[0]['A']}, H = {rows[0]['H']})")
    by_size.set_ylabel("median time per call (ms)")
    by_size.legend(fontsize="x-small")
    largest = max(r["S"] for r in rows)
    chosen = [r for r in rows if r["S"] == largest]
    lo = min(r["refresh_ms"].min() for r in chosen)
    hi = max(r["refresh_ms"].max() for r in chosen)
    bins = np.geomspace(max(lo, 1e-3), max(hi, lo * 1.01), 40)
    for r in chosen:
        hist.hist(r["refresh_ms"], bins=bins, histtype="step", label=f"{r['backend']}/{r['precision']}")
    hist.set_xscale("log")
    hist.set_title(f"refresh at S={largest}, A={chosen[0]['A']}")
    hist.set_xlabel("policy refresh (ms)")
    hist.set_ylabel("calls")
    hist.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def cmd_latency(args: argparse.Namespace) -> int:
    backends, precisions = csv_list(args.backends), csv_list(args.precisions)
    states = csv_ints("states", args.states)
    if args.repeats < 1 or args.warmup < 0 or args.threads < 1:
        raise ValueError(f"--repeats and --threads must be >= 1 and --warmup >= 0, got {args.repeats}, "
                         f"{args.threads}, {args.warmup}")
    load_before = os.getloadavg()[0]
    rows, notes = run_latency(args.model, backends, precisions, states, args.actions, args.horizon,
                              args.repeats, args.warmup, args.seed, args.threads)
    if not rows:
        raise RuntimeError("no backend/precision could run: " + "; ".join(notes))
    mflop = {}
    if dense := _cpu_torch_dense(args.model):
        k = dense.net.config.max_successors
        mflop = {n: model_mflop(dense, refresh_stats(np.random.default_rng(args.seed), n, args.actions),
                                args.horizon, k) for n in sorted({r["S"] for r in rows})}
    else:
        notes.append("torch is not installed: the model's matrix products are not counted.")
    summary = summarize(rows, mflop)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    png = plot_latency(rows, out / "latency.png")
    table = latency_table(summary)
    machine = (f"{os.cpu_count()} CPU cores, {args.threads} intra-op thread(s), load average "
               f"{load_before:.1f} before and {os.getloadavg()[0]:.1f} after")
    if gpu := _gpu_name():
        machine += f"; GPU {gpu} (torch runs there, others on the CPU unless they say)"
    rates = {name: [s["gemm_gflops"][name] for s in summary] for name in GEMM_SHAPES}
    rates = ", ".join(f"{name} {min(v):.0f}-{max(v):.0f}" for name, v in rates.items())
    body = (f"{table}\n{args.repeats} calls per row after {args.warmup} warm-up calls, A = {args.actions}, "
            f"H = {args.horizon}, on {machine}. The machine's fp32 GEMM rate with the same threads, timed "
            f"right after each row (GFLOP/s, range over rows): {rates}; the share is the model's rate over "
            f"the better of the two in its row. Peak RSS is the process's, cumulative over rows. "
            + " ".join(notes) + f"\nPlot: `{png}`.")
    print(body)
    command = ["rlfm-edge", "bench", "latency", "--backends", ",".join(backends),
               "--precisions", ",".join(precisions), "--states", ",".join(map(str, states)),
               "--actions", str(args.actions), "--horizon", str(args.horizon), "--threads", str(args.threads),
               "--repeats", str(args.repeats), "--out", args.out]
    if args.model:
        command += ["--model", str(args.model)]
    results = {"kind": "latency", "command": shlex.join(command),
               "config": {k: getattr(args, k) for k in ("model", "actions", "horizon", "repeats", "warmup",
                                                        "seed", "threads")} | {
                   "backends": backends, "precisions": precisions, "states": states},
               "machine": machine, "notes": notes, "summary": summary,
               "rows": [{k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in r.items()}
                        for r in rows]}
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "results.md").write_text(body + "\n")
    print(f"wrote {out / 'results.json'}, {out / 'results.md'}, {png}")
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
    p.add_argument("--horizon", type=int, default=50, help="episode length H the plan features look ahead")
    p.add_argument("--threads", type=int, default=1,
                   help="intra-op threads of the CPU backends and of the GEMM rate measured beside them")
    p.add_argument("--repeats", type=int, default=200, help="timed calls per row")
    p.add_argument("--warmup", type=int, default=10, help="untimed calls first")
    p.add_argument("--seed", type=int, default=0, help="seed of the random statistics")
    p.add_argument("--out", default="results/latency",
                   help="folder for results.json, results.md and the plot")
    add_record_options(p)
    p.set_defaults(func=cmd_latency)
