"""Policy refresh of this checkout against an older one, timed alternately in one process.

    python benchmarks/layout_ab.py --old-ref 792f26e --states 16,64,256 --record

The older checkout's dense twin, feature code and shipped ONNX export are read from git
(``git show REF:path``) and run beside this checkout's, call by call in turn, so that a
shared machine's slow spells hit both alike. Each row is one refresh of the shipped model
at one thread: features (build and pad) then the model, ONNX Runtime fp32 and torch. Wall
time medians, and the thread's CPU time (less disturbed by other processes' load).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from rlfm_edge.bench.report import print_and_record
from rlfm_edge.inference.timing import refresh_stats

OLD_FILES = {"dense": "rlfm_edge/model/dense.py", "features": "rlfm_edge/model/features.py",
             "onnx": "rlfm_edge/models/default/model.onnx"}


def _git_show(ref: str, path: str) -> bytes:
    return subprocess.run(["git", "show", f"{ref}:{path}"], check=True, capture_output=True,
                          cwd=Path(__file__).resolve().parent.parent).stdout


def _load_module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


def _refreshes(old_dir: Path, n_states: int, n_actions: int, horizon: int):
    """name -> zero-argument refresh, for the old and new checkout and each backend."""
    import onnxruntime as ort
    import torch

    from rlfm_edge.inference.onnx_backend import OnnxRuntimeEngine, session_options
    from rlfm_edge.model import features as new_features
    from rlfm_edge.model.dense import DenseGAT
    from rlfm_edge.model.io import load_model

    old_features = sys.modules.get("old_features") or _load_module("old_features", old_dir / "features.py")
    old_dense = sys.modules.get("old_dense") or _load_module("old_dense", old_dir / "dense.py")
    old_session = ort.InferenceSession(str(old_dir / "model.onnx"), session_options(1),
                                       providers=["CPUExecutionProvider"])
    new_engine = OnnxRuntimeEngine(threads=1, providers=["CPUExecutionProvider"])
    net = load_model()
    twins = {"old": old_dense.DenseGAT(net).eval(), "new": DenseGAT(net).eval()}
    stats = refresh_stats(np.random.default_rng(0), n_states, n_actions)
    k = net.config.max_successors
    base = new_features.base_features(stats, horizon, k)

    def old_ort():
        g = old_features.build_features(stats, horizon, k)
        inputs = old_features.pad_features([g], net.config.max_states, net.config.max_actions, k)
        return old_session.run(None, inputs.as_dict())

    def torch_refresh(name, module):
        def run():
            g = module.build_features(stats, horizon, k)
            actions = net.config.max_actions if name == "old" else n_actions
            inputs = module.pad_features([g], n_states, actions, k)
            with torch.inference_mode():
                return twins[name](*(torch.from_numpy(v) for v in inputs.as_dict().values()))
        return run

    return {
        "onnxruntime fp32, old": old_ort,
        "onnxruntime fp32, new": lambda: new_engine.policy(stats, horizon),
        "torch fp32, old": torch_refresh("old", old_features),
        "torch fp32, new": torch_refresh("new", new_features),
        "features, old": lambda: old_features.build_features(stats, horizon, k),
        "features, new": lambda: new_features.build_features(stats, horizon, k),
        "plan features, old": lambda: old_features.plan_features(base, horizon),
        "plan features, new": lambda: new_features.plan_features(base, horizon),
    }


def main() -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-ref", required=True, help="git commit of the older checkout")
    parser.add_argument("--states", default="16,64,256")
    parser.add_argument("--actions", type=int, default=8)
    parser.add_argument("--horizon", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--record", nargs="?", const="BENCHMARKS.md", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    lines = ["| S x A | refresh | old: median wall / CPU (ms) | new: median wall / CPU (ms) | "
             "new / old (CPU) |", "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        old_dir = Path(tmp)
        for path in OLD_FILES.values():
            (old_dir / Path(path).name).write_bytes(_git_show(args.old_ref, path))
        for n_states in (int(s) for s in args.states.split(",")):
            fns = _refreshes(old_dir, n_states, args.actions, args.horizon)
            wall = {name: [] for name in fns}
            cpu = {name: [] for name in fns}
            for i in range(args.repeats + 3):
                for name, fn in fns.items():
                    c, t = time.thread_time(), time.perf_counter()
                    fn()
                    if i >= 3:
                        wall[name].append(time.perf_counter() - t)
                        cpu[name].append(time.thread_time() - c)
            for what in ("onnxruntime fp32", "torch fp32", "features", "plan features"):
                old, new = f"{what}, old", f"{what}, new"
                o, n = (1e3 * np.median(wall[x]) for x in (old, new))
                oc, nc = (1e3 * np.median(cpu[x]) for x in (old, new))
                lines.append(f"| {n_states} x {args.actions} | {what} | {o:.2f} / {oc:.2f} | "
                             f"{n:.2f} / {nc:.2f} | {nc / oc:.2f} |")
    note = (f"{args.repeats} calls of each, in turn, one thread, H = {args.horizon}; old = `{args.old_ref}` "
            f"(ONNX Runtime padded to its export's 256 x 8, torch to S x 8), new = this checkout (both at "
            f"S x A). \"features\" is build_features alone, \"plan features\" the H-step backward "
            f"induction alone (plan_features). 1-min load average at the end: "
            f"{os.getloadavg()[0]:.1f}.")
    body = "\n".join([*lines, "", note])
    print_and_record(body, args.record, "Policy refresh: this layout against the one before (alternating)",
                     __file__, sys.argv[1:])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
