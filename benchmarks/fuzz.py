"""Fuzz every parser of outside input for a fixed time each; count inputs tried and failures.

    python benchmarks/fuzz.py                         # all targets, 60 s each
    python benchmarks/fuzz.py --targets stats,mcap --seconds 600 --record

A target is one parser fed raw bytes, starting from a corpus of valid files it mutates:
``serial`` (frame decoder), ``stats`` (statistics files), ``config`` (discretizer and robot
YAML), ``manifest`` (model manifest.json), ``weights`` (weights.npz under a matching
manifest), ``onnx`` (model.onnx under a matching manifest and description), ``mcap``
(transition logs). A failure is any exception other than the parser's documented error
(FrameDecoder: none at all; StatsFileError; ValueError; ModelFileError), a decoder buffer
over its bound, a hang (over 10 s on one input) or a crash of the process.

Engine: atheris (coverage-guided libFuzzer; ``pip install atheris``) when it imports, else
hypothesis in a loop. Each target runs in its own process, so a crash in native code is
counted for that target and the others still run. Failing inputs are saved under
``--out``/crashes for replay with ``--replay FILE --targets NAME``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ("serial", "stats", "config", "manifest", "weights", "onnx", "mcap")
_FLUSH_EVERY_S = 1.0


# -- targets: bytes -> the parser, raising Failure on anything but its documented error ----------
class Failure(Exception):
    """The parser misbehaved on this input."""


class Target:
    """One parser under test; ``seeds()`` are valid inputs the fuzzer starts from."""

    def __init__(self, name: str, work: Path) -> None:
        self.name = name
        self.work = work
        self.work.mkdir(parents=True, exist_ok=True)
        self._setup()

    def _setup(self) -> None:
        pass

    def seeds(self) -> list[bytes]:
        raise NotImplementedError

    def __call__(self, data: bytes) -> None:
        raise NotImplementedError


class SerialTarget(Target):
    def seeds(self):
        from rlfm_edge.serial.protocol import Action, Error, Heartbeat, Observation, encode_frame

        msgs = [Observation((0.1, -2.0, 3.5), 0.5, seq=1), Action(1, 1, seq=2), Heartbeat(99, seq=3),
                Error(1, 3, "bad frame", seq=4), Observation((1.0,), 0.0, True, True, 5, True, True)]
        return [b"".join(encode_frame(m) for m in msgs), encode_frame(msgs[0])]

    def __call__(self, data):
        from rlfm_edge.serial.protocol import FrameDecoder

        dec = FrameDecoder(check_seq=bool(data[:1]) and data[0] & 1 == 1)
        step = 1 + (data[0] if data else 0) % 64
        for i in range(0, len(data), step):
            dec.feed(data[i:i + step])
            if len(dec._buf) > dec.max_frame:
                raise Failure(f"decoder buffer {len(dec._buf)} bytes over its bound {dec.max_frame}")


class StatsTarget(Target):
    def seeds(self):
        import numpy as np

        from rlfm_edge.stats import CountStats

        out = []
        for S, A in ((2, 2), (5, 3)):
            s = CountStats(S, A)
            rng = np.random.default_rng(S)
            s.update_batch(rng.integers(0, S, 30), rng.integers(0, A, 30), rng.random(30),
                           rng.integers(0, S, 30))
            s.save(self.work / "seed.npz")
            out.append((self.work / "seed.npz").read_bytes())
        return out

    def __call__(self, data):
        from rlfm_edge.stats import CountStats, StatsFileError

        path = self.work / "f.npz"
        path.write_bytes(data)
        with contextlib.suppress(StatsFileError):
            CountStats.load(path)


class ConfigTarget(Target):
    def seeds(self):
        import yaml

        from rlfm_edge.sim_robot import CARTPOLE_CONFIG

        robot = {**CARTPOLE_CONFIG, "statistics": {"path": "s.npz", "save_every_s": 30}, "log": "l.mcap"}
        disc = {"version": 1, "dimensions": [{"name": "x", "low": -1.0, "high": 1.0,
                                              "edges": [-0.5, 0, 0.5]}]}
        return [yaml.safe_dump(robot).encode(), yaml.safe_dump(disc).encode()]

    def __call__(self, data):
        from rlfm_edge.discretize import Discretizer
        from rlfm_edge.runtime import RobotConfig

        path = self.work / "c.yaml"
        path.write_bytes(data)
        for load in (Discretizer.load, RobotConfig.load):
            with contextlib.suppress(ValueError):
                load(path)


class _ModelTarget(Target):
    """A tiny saved model (weights, config, manifest) in ``self.model``."""

    onnx = False

    def _setup(self):
        import torch

        from rlfm_edge.model import ModelConfig
        from rlfm_edge.model.gat import PolicyGAT
        from rlfm_edge.model.io import save_model

        torch.manual_seed(0)
        self.model = self.work / "model"
        if not (self.model / "manifest.json").exists():
            save_model(PolicyGAT(ModelConfig(hidden=4, heads=2, layers=1, max_successors=2,
                                             max_states=6, max_actions=2)), self.model)
            if self.onnx:
                from rlfm_edge.training.export import export_onnx

                export_onnx(self.model)
        self.case = self.work / "case"
        shutil.rmtree(self.case, ignore_errors=True)
        shutil.copytree(self.model, self.case)


class ManifestTarget(_ModelTarget):
    def seeds(self):
        return [(self.model / "manifest.json").read_bytes()]

    def __call__(self, data):
        from rlfm_edge.model.io import ModelFileError, load_config, verify_manifest

        (self.case / "manifest.json").write_bytes(data)
        with contextlib.suppress(ModelFileError):
            verify_manifest(self.case, required=("weights.npz", "config.json"))
            load_config(self.case)


class WeightsTarget(_ModelTarget):
    def seeds(self):
        return [(self.model / "weights.npz").read_bytes()]

    def __call__(self, data):
        from rlfm_edge.model.io import ModelFileError, load_model, write_manifest

        (self.case / "weights.npz").write_bytes(data)
        write_manifest(self.case)
        with contextlib.suppress(ModelFileError):
            load_model(self.case)


class OnnxTarget(_ModelTarget):
    onnx = True

    def seeds(self):
        return [(self.model / "model.onnx").read_bytes()]

    def __call__(self, data):
        from rlfm_edge.inference.onnx_backend import OnnxRuntimeEngine
        from rlfm_edge.model.io import ModelFileError, sha256_file, write_manifest

        (self.case / "model.onnx").write_bytes(data)
        spec = json.loads((self.model / "model.onnx.json").read_text())
        spec["sha256"] = sha256_file(self.case / "model.onnx")
        (self.case / "model.onnx.json").write_text(json.dumps(spec))
        write_manifest(self.case)
        with contextlib.suppress(ModelFileError):
            OnnxRuntimeEngine(self.case, threads=1)


class McapTarget(Target):
    def seeds(self):
        from rlfm_edge.logs import TransitionLogger

        path = self.work / "seed.mcap"
        with TransitionLogger(path, 4, 2, 10, "dimensions: []") as log:
            for i in range(12):
                log.write(0, i, [0.1 * i, -0.2], i % 4, i % 2, 0.5, (i - 1) % 4 if i else -1,
                          (i - 1) % 2 if i else -1, 1000)
        return [path.read_bytes()]

    def __call__(self, data):
        from rlfm_edge.logs import read_info, read_observations, read_statistics

        path = self.work / "f.mcap"
        path.write_bytes(data)
        for read in (read_info, read_statistics, read_observations):
            with contextlib.suppress(ValueError):
                read(path)


_CLASSES = {"serial": SerialTarget, "stats": StatsTarget, "config": ConfigTarget,
            "manifest": ManifestTarget, "weights": WeightsTarget, "onnx": OnnxTarget, "mcap": McapTarget}


# -- the child: one target, one engine, counters flushed to a JSON file ----------------------------
class Recorder:
    def __init__(self, target: Target, out: Path, engine: str) -> None:
        self.target, self.out, self.engine = target, out, engine
        self.inputs = 0
        self.failures: dict[str, int] = {}
        self.examples: list[dict] = []
        self.t0 = time.monotonic()
        self._flushed = 0.0
        (out / "crashes").mkdir(parents=True, exist_ok=True)

    def __call__(self, data: bytes) -> None:
        self.inputs += 1
        try:
            self.target(data)
        except Exception as exc:  # noqa: BLE001 - anything undocumented is what we are looking for
            key = f"{type(exc).__name__}: {str(exc)[:120]}"
            if key not in self.failures:
                name = f"{self.target.name}-{len(self.failures)}.bin"
                (self.out / "crashes" / name).write_bytes(data)
                self.examples.append({"error": key, "input": name,
                                      "where": traceback.format_exc(limit=-3)[-600:]})
            self.failures[key] = self.failures.get(key, 0) + 1
        now = time.monotonic()
        if now - self._flushed > _FLUSH_EVERY_S:
            self.flush()

    def flush(self) -> None:
        self._flushed = time.monotonic()
        result = {"target": self.target.name, "engine": self.engine, "inputs": self.inputs,
                  "failures": sum(self.failures.values()), "distinct_failures": len(self.failures),
                  "examples": self.examples, "seconds": round(time.monotonic() - self.t0, 1)}
        tmp = self.out / f"{self.target.name}.json.tmp"
        tmp.write_text(json.dumps(result, indent=1))
        os.replace(tmp, self.out / f"{self.target.name}.json")


def _child_atheris(name: str, seconds: float, out: Path) -> None:
    import atheris

    with atheris.instrument_imports(include=["rlfm_edge", "mcap", "mcap_ros2"]):
        import rlfm_edge.discretize  # noqa: F401
        import rlfm_edge.logs  # noqa: F401
        import rlfm_edge.model.io  # noqa: F401
        import rlfm_edge.npz  # noqa: F401
        import rlfm_edge.runtime  # noqa: F401
        import rlfm_edge.serial.protocol  # noqa: F401
        import rlfm_edge.stats  # noqa: F401
    target = _CLASSES[name](name, Path(tempfile.mkdtemp(prefix=f"fuzz-{name}-")))
    corpus = out / "corpus" / name
    corpus.mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate(target.seeds()):
        (corpus / f"seed-{i}").write_bytes(seed)
    recorder = Recorder(target, out, "atheris")
    import atexit

    atexit.register(recorder.flush)
    atheris.Setup([sys.argv[0], f"-max_total_time={int(seconds)}", "-timeout=10",
                   "-rss_limit_mb=3072", "-max_len=65536", "-print_final_stats=1", str(corpus)],
                  recorder)
    atheris.Fuzz()


def _child_hypothesis(name: str, seconds: float, out: Path) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    target = _CLASSES[name](name, Path(tempfile.mkdtemp(prefix=f"fuzz-{name}-")))
    seeds = target.seeds()
    recorder = Recorder(target, out, "hypothesis")

    def mutate(t):
        seed, i, junk, kind = t
        i %= len(seed) + 1
        return (seed[:i] + junk + seed[i + len(junk):], seed[:i], seed[:i] + junk + seed[i:])[kind]

    inputs = st.one_of(st.binary(max_size=4096), st.tuples(
        st.sampled_from(seeds), st.integers(0, 1 << 20), st.binary(min_size=1, max_size=32),
        st.integers(0, 2)).map(mutate))

    @settings(max_examples=2000, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(inputs)
    def run(data):
        recorder(data)

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        run()
    recorder.flush()


# -- the parent: one process per target, a table at the end ---------------------------------------
def _run_target(name: str, seconds: float, engine: str, out: Path) -> dict:
    result_file = out / f"{name}.json"
    result_file.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--seconds", str(seconds),
           "--engine", engine, "--out", str(out)]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                          timeout=seconds + 600, env={**os.environ, "PYTHONPATH": str(ROOT)})
    result = json.loads(result_file.read_text()) if result_file.exists() else {
        "target": name, "engine": engine, "inputs": 0, "failures": 0, "distinct_failures": 0,
        "examples": []}
    log_tail = (proc.stdout + proc.stderr)[-3000:]
    executed = [ln for ln in log_tail.splitlines() if "number_of_executed_units" in ln]
    if executed:
        result["inputs"] = max(result["inputs"], int(executed[-1].split(":")[-1]))
    if proc.returncode != 0:  # libFuzzer: crash, timeout or out-of-memory of the whole process
        result["failures"] += 1
        result["distinct_failures"] += 1
        result["examples"].append({"error": f"process exited {proc.returncode}", "log": log_tail})
    result["wall_s"] = round(time.monotonic() - t0, 1)
    return result


def _table(results: list[dict], seconds: float) -> str:
    lines = ["| parser | target | engine | fuzz time (s) | inputs tried | failures (distinct) |",
             "|---|---|---|---|---|---|"]
    what = {"serial": "FrameDecoder.feed", "stats": "CountStats.load", "config":
            "Discretizer.load + RobotConfig.load", "manifest": "verify_manifest + load_config",
            "weights": "load_model (weights.npz)", "onnx": "OnnxRuntimeEngine (model.onnx)",
            "mcap": "read_info/read_statistics/read_observations"}
    for r in results:
        lines.append(f"| {what[r['target']]} | {r['target']} | {r['engine']} | {seconds:g} | "
                     f"{r['inputs']:,} | {r['failures']} ({r['distinct_failures']}) |")
    return "\n".join(lines)


def _engine(requested: str) -> str:
    if requested != "auto":
        return requested
    try:
        import atheris  # noqa: F401
    except ImportError:
        return "hypothesis"
    return "atheris"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--targets", default=",".join(TARGETS))
    p.add_argument("--seconds", type=float, default=60.0, help="fuzzing time per target")
    p.add_argument("--engine", choices=("auto", "atheris", "hypothesis"), default="auto")
    p.add_argument("--out", default="results/fuzz")
    p.add_argument("--record", action="store_true", help="write the table into BENCHMARKS.md")
    p.add_argument("--replay", default=None, help="run one saved input through --targets (one name)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.child:
        # every input is bad input: the parsers' (rate-limited) warnings would only fill the log
        logging.disable(logging.WARNING)
        child = _child_atheris if args.engine == "atheris" else _child_hypothesis
        child(args.child, args.seconds, out)
        return 0
    names = [t for t in args.targets.split(",") if t]
    unknown = set(names) - set(TARGETS)
    if unknown:
        p.error(f"--targets: unknown {sorted(unknown)}; choose from {list(TARGETS)}")
    if args.replay:
        target = _CLASSES[names[0]](names[0], Path(tempfile.mkdtemp()))
        target(Path(args.replay).read_bytes())
        print("no failure")
        return 0
    engine = _engine(args.engine)
    results = []
    for name in names:
        r = _run_target(name, args.seconds, engine, out)
        print(f"{name}: {r['inputs']:,} inputs, {r['failures']} failures in {r['wall_s']} s", flush=True)
        for ex in r["examples"][:5]:
            print("   ", ex.get("error"), ex.get("input", ""))
        results.append(r)
    (out / "summary.json").write_text(json.dumps(results, indent=1))
    table = _table(results, args.seconds)
    from rlfm_edge.bench.report import print_and_record

    print_and_record(table + "\n\nA failure is any exception but the parser's documented error, a "
                     "hang over 10 s, or a crash; failing inputs are saved under --out/crashes.",
                     ROOT / "BENCHMARKS.md" if args.record else None, "Reliability: parser fuzzing",
                     __file__, [a for a in (argv or sys.argv[1:]) if a != "--record"])
    return 1 if any(r["failures"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
