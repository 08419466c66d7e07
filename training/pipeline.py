"""One command rebuilds a model from nothing: the rounds of a pipeline file, in order.

    rlfm-edge train --pipeline training/pipeline.yaml

A pipeline file lists training configs (training/configs/), one per round, and the commands
that finish the last round's model (export to ONNX, INT8 calibration). A round is done when its
``out_dir`` holds a model, and is skipped then, so an interrupted rebuild resumes where it
stopped (a round's own checkpoint resumes it mid-way). A round marked ``data_only`` makes its
data folders and trains nothing: a later round replays them.

Every round's config is checked before anything runs, and so is the chain: a round after the
first starts from the model of the round before it (``init_from``), and a round that collects
data with a model (``data.model_dir``) uses that same one. So the file says exactly what the
shipped model is made of.

```yaml
rounds:
  - training/configs/default.yaml
  - {config: training/configs/dagger6.yaml, data_only: true}
finish:                  # rlfm-edge commands run on the last model, with --model appended
  - [export]
  - [calibrate]
```
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import yaml

from training.data import generate
from training.train import TrainConfig, train

log = logging.getLogger("rlfm_edge.train")


@dataclass(frozen=True)
class Round:
    config_path: Path
    config: TrainConfig
    data_only: bool = False

    @property
    def model_dir(self) -> Path:
        return Path(self.config.out_dir) / "model"

    def done(self) -> bool:
        if self.data_only:
            return False  # generate() keeps finished shards: rerunning it costs nothing
        return (self.model_dir / "weights.npz").is_file()


@dataclass(frozen=True)
class Pipeline:
    rounds: list[Round]
    finish: list[list[str]]

    @property
    def final_model(self) -> Path:
        return [r for r in self.rounds if not r.data_only][-1].model_dir


def load(path: str | Path) -> Pipeline:
    """The pipeline in ``path``, every round's config and the chain between them checked."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read pipeline ({exc})") from None
    if not isinstance(raw, dict) or set(raw) - {"rounds", "finish"} or not raw.get("rounds"):
        raise ValueError(f"{path}: expected a mapping with 'rounds' (a list of training configs) "
                         f"and optionally 'finish' (a list of commands)")
    rounds = []
    for i, item in enumerate(raw["rounds"]):
        where = f"{path}: rounds[{i}]"
        if isinstance(item, str):
            item = {"config": item}
        if not isinstance(item, dict) or not isinstance(item.get("config"), str) \
                or set(item) - {"config", "data_only"} or not isinstance(item.get("data_only", False), bool):
            raise ValueError(f"{where}: expected a config path or {{config: PATH, data_only: BOOL}}, "
                             f"got {item!r}")
        try:
            cfg = TrainConfig.from_yaml(item["config"], check_files=False)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        rounds.append(Round(Path(item["config"]), cfg, item.get("data_only", False)))
    finish = raw.get("finish") or []
    if not isinstance(finish, list) or not all(
            isinstance(c, list) and c and all(isinstance(w, str) for w in c) for c in finish):
        raise ValueError(f"{path}: finish: expected a list of commands, each a list of words")
    if all(r.data_only for r in rounds):
        raise ValueError(f"{path}: rounds: no round trains a model")
    _check_chain(path, rounds)
    return Pipeline(rounds, finish)


def _check_chain(path: Path, rounds: list[Round]) -> None:
    previous: Path | None = None
    for i, r in enumerate(rounds):
        where = f"{path}: rounds[{i}] ({r.config_path})"
        start = Path(r.config.init_from) if r.config.init_from else None
        collector = r.config.data.get("model_dir") or None
        if previous is None:
            if start is not None and not r.data_only:
                raise ValueError(f"{where}: the first round trains from scratch; init_from is "
                                 f"{start}")
        else:
            if not r.data_only and start != previous:
                raise ValueError(f"{where}: init_from is {start}, expected the previous round's "
                                 f"model {previous}")
            if collector is not None and Path(collector) != previous:
                raise ValueError(f"{where}: data.model_dir is {collector}, expected the previous "
                                 f"round's model {previous}")
        if not r.data_only:
            previous = r.model_dir


def run(path: str | Path) -> Path:
    """Run the rounds not done yet, then the finishing commands; returns the final model."""
    from rlfm_edge.cli import main as cli_main

    pipeline = load(path)
    for i, r in enumerate(pipeline.rounds, 1):
        label = f"round {i}/{len(pipeline.rounds)} ({r.config_path})"
        if r.done():
            log.info("%s: done, %s exists", label, r.model_dir)
            continue
        r.config.check_files()
        if r.data_only:
            log.info("%s: data only", label)
            model, prior, data = r.config.sections()
            generate(Path(r.config.data_dir), r.config.n_examples, r.config.data_seed, prior, data,
                     shard_size=5000, workers=r.config.workers)
            continue
        log.info("%s: training", label)
        train(r.config)
    for command in pipeline.finish:
        log.info("finish: rlfm-edge %s --model %s", " ".join(command), pipeline.final_model)
        code = cli_main([*command, "--model", str(pipeline.final_model)])
        if code:
            raise RuntimeError(f"finish: `rlfm-edge {' '.join(command)}` exited {code}")
    return pipeline.final_model
