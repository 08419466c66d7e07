"""Train the policy GAT on generated examples; single process or torchrun (DDP).

    rlfm-edge train --config training/configs/default.yaml
    torchrun --nproc-per-node 4 -m rlfm_edge.training.train --config training/configs/default.yaml

Checkpoints (``checkpoint.pt``: weights, optimiser, epoch) are written atomically every
epoch and resumed from automatically; the final model is written as a model directory
(weights.npz, config.json, manifest, training record) that rlfm_edge loads without pickle.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch.nn.parallel import DistributedDataParallel
from torch_geometric.data import Batch
from torch_geometric.loader import DataLoader
from tqdm import tqdm

from rlfm_edge.atomic import atomic_write_bytes
from rlfm_edge.interrupt import Interrupted, stop_signals
from rlfm_edge.model.config import ModelConfig
from rlfm_edge.model.features import BASE_SA_FEATURES, PLAN_SA_FEATURES
from rlfm_edge.model.gat import OWN, PolicyGAT, to_graph
from rlfm_edge.model.io import read_weights, save_model
from rlfm_edge.training.config_check import check_fields
from rlfm_edge.training.data import DataConfig, generate, generation_seconds, load_shard
from rlfm_edge.training.losses import boltzmann_cross_entropy
from rlfm_edge.training.prior import PriorConfig
from rlfm_edge.training.validate import validate

log = logging.getLogger("rlfm_edge.train")
LOSS_WEIGHTS = ("state", "mdp")


@dataclass
class TrainConfig:
    out_dir: str = "runs/default"
    data_dir: str = "data/train"
    val_dir: str = "data/val"
    n_examples: int = 150000
    n_val: int = 2000
    data_seed: int = 1
    val_seed: int = 2
    seed: int = 0
    epochs: int = 6
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    tau: float = 0.05          # target temperature, relative to the Q* range of each MDP
    loss_weight: str = "state"  # "state": every state weighs the same; "mdp": every MDP does
    grad_clip: float = 1.0
    workers: int = 2
    time_budget_s: float = 0.0  # stop after this much training time (0: no limit)
    init_from: str = ""        # start from this model directory (e.g. a DAgger round)
    replay_dirs: list[str] = field(default_factory=list)  # more shards: folders or glob patterns
    model: dict = field(default_factory=dict)  # ModelConfig fields
    prior: dict = field(default_factory=dict)  # PriorConfig fields
    data: dict = field(default_factory=dict)  # DataConfig fields

    def __post_init__(self) -> None:
        """Every field checked, types and values, with the model, prior and data sections: a bad
        config fails here, not after the data were made (the files it names: check_files)."""
        check_fields(TrainConfig, {f.name: getattr(self, f.name) for f in fields(self)})
        for name, minimum in (("n_examples", 1), ("n_val", 1), ("epochs", 1), ("batch_size", 1),
                              ("workers", 1)):
            if getattr(self, name) < minimum:
                raise ValueError(f"{name}: expected an integer >= {minimum}, got {getattr(self, name)}")
        for name in ("lr", "tau", "grad_clip"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: expected a number > 0, got {getattr(self, name)}")
        for name in ("weight_decay", "time_budget_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: expected a number >= 0, got {getattr(self, name)}")
        if self.loss_weight not in LOSS_WEIGHTS:
            raise ValueError(f"loss_weight: expected one of {', '.join(LOSS_WEIGHTS)}, "
                             f"got {self.loss_weight!r}")
        model, prior, data = self.sections()
        if data.max_successors != model.max_successors:
            raise ValueError(f"data.max_successors={data.max_successors} must equal "
                             f"model.max_successors={model.max_successors}")

    def check_files(self) -> None:
        """The files the config names exist and fit: init_from's model, data.model_dir, replay_dirs."""
        model, _, data = self.sections()
        if data.model_dir and not Path(data.model_dir).is_dir():
            raise ValueError(f"data.model_dir: {data.model_dir} is not a model directory")
        if self.init_from:
            try:
                config, _ = read_weights(Path(self.init_from))
            except ValueError as exc:
                raise ValueError(f"init_from: {exc}") from None
            if config != model:
                raise ValueError(f"init_from: {self.init_from} has config {config}, not the "
                                 f"model section's {model}")
        for extra in self.replay_dirs:
            if not _replay_shards(extra):
                raise ValueError(f"replay_dirs: no shards match {extra}")

    def sections(self) -> tuple[ModelConfig, PriorConfig, DataConfig]:
        """The model, prior and data sections as their config objects (each checked)."""
        out = []
        for name, cls in (("model", ModelConfig), ("prior", PriorConfig), ("data", DataConfig)):
            raw = check_fields(cls, getattr(self, name), name)
            try:
                out.append(cls(**raw))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{name}: {exc}") from None
        return tuple(out)

    @classmethod
    def from_yaml(cls, path: str | Path, check_files: bool = True) -> TrainConfig:
        """The config in ``path``, checked whole; ``check_files=False`` leaves the files it names
        to ``check_files()`` (a pipeline's later rounds name models not trained yet)."""
        try:
            raw = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"{path}: cannot read training config ({exc})") from None
        try:
            cfg = cls(**check_fields(cls, {} if raw is None else raw))
            if check_files:
                cfg.check_files()
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
        return cfg


def _replay_shards(extra: str) -> list[Path]:
    """The shards one ``replay_dirs`` entry names: a folder's, or a glob pattern's."""
    return sorted(Path(extra).glob("shard_*.npz") if Path(extra).is_dir() else Path().glob(extra))


class Examples(torch.utils.data.Dataset):
    def __init__(self, shards: list[Path]) -> None:
        self.items = [item for p in shards for item in load_shard(p)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        g, q = self.items[i]
        data = to_graph(g)
        data["sa"].q = torch.from_numpy(q.reshape(-1))
        return data


def batch_loss(net, batch: Batch, tau: float, loss_weight: str = "state") -> torch.Tensor:
    """The batch's cross-entropy, each state weighing the same ("state") or each MDP ("mdp":
    its states share 1 / batch size, so large MDPs do not outweigh small ones)."""
    logits = net(batch)
    owner = batch[OWN].edge_index[1]
    weight = None
    if loss_weight == "mdp":
        graph = batch["state"].batch
        sizes = torch.bincount(graph, minlength=batch.num_graphs).to(logits.dtype)
        weight = 1.0 / (sizes[graph] * batch.num_graphs)
    return boltzmann_cross_entropy(logits, batch["sa"].q, owner, batch["state"].num_nodes, tau, weight)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _warm_start(net: PolicyGAT, model_dir: Path) -> None:
    """Load ``init_from``'s weights into ``net``.

    A model trained before the plan features existed reads fewer (s, a) input columns: its
    first (s, a) layer gets zero weights on the new ones, so training starts from its policy.
    """
    config, arrays = read_weights(model_dir)
    if config != net.config:
        raise ValueError(f"init_from: {model_dir} has config {config}, not {net.config}")
    state = {k: torch.from_numpy(v.astype(np.float32)) for k, v in arrays.items()}
    first = state.get("sa_in.0.weight")
    if first is not None and first.shape[1] == BASE_SA_FEATURES:
        state["sa_in.0.weight"] = torch.cat([first, first.new_zeros(first.shape[0], PLAN_SA_FEATURES)], 1)
    net.load_state_dict(state)


def _save_checkpoint(path: Path, net, opt, sched, epoch: int, history: list) -> None:
    import io

    buf = io.BytesIO()
    torch.save({"model": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                "epoch": epoch, "history": history}, buf)
    atomic_write_bytes(path, buf.getvalue())


def _rank0_seconds(seconds: float, distributed: bool) -> float:
    """Rank 0's training clock on every rank, so all ranks anneal alike and stop at the same step
    (each rank's own clock differs: a rank that stopped alone left the others hanging in backward)."""
    if not distributed:
        return seconds
    clock = torch.tensor([seconds], dtype=torch.float64,
                         device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.broadcast(clock, src=0)
    return float(clock)


def _leave_process_group() -> None:
    """Wait for rank 0 (saving the model) first: a rank tearing down right after a collective
    deadlocked in 2 of 5 test runs (gloo's worker thread, still freeing that collective's tensor,
    needs the GIL that the teardown holds); the barrier releases it meanwhile and holds no tensor."""
    dist.barrier()
    dist.destroy_process_group()


def train(cfg: TrainConfig) -> Path:
    cfg.check_files()
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    rank = 0
    if distributed:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        rank = dist.get_rank()
    _seed_everything(cfg.seed + rank)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model_cfg, prior, data_cfg = cfg.sections()
    t0 = time.time()
    if rank == 0:
        train_shards = generate(Path(cfg.data_dir), cfg.n_examples, cfg.data_seed, prior, data_cfg,
                                shard_size=5000, workers=cfg.workers)
        val_shards = generate(Path(cfg.val_dir), cfg.n_val, cfg.val_seed, prior, data_cfg,
                              shard_size=cfg.n_val, workers=cfg.workers)
    if distributed:
        dist.barrier()
    train_shards = sorted(Path(cfg.data_dir).glob(f"shard_{cfg.data_seed}_*.npz"))
    for extra in cfg.replay_dirs:
        train_shards += _replay_shards(extra)
    val_shards = sorted(Path(cfg.val_dir).glob(f"shard_{cfg.val_seed}_*.npz"))
    # What the data cost to make, also when an earlier run made it (replayed shards belong
    # to the runs that made them); this run's own time where a folder does not say.
    made = [generation_seconds(Path(d)) for d in (cfg.data_dir, cfg.val_dir)]
    gen_time = sum(made) if None not in made else time.time() - t0
    dataset = Examples(train_shards)
    val_set = Examples(val_shards)
    sampler = (torch.utils.data.distributed.DistributedSampler(dataset, seed=cfg.seed)
               if distributed else None)
    shuffle = torch.Generator()  # reseeded every epoch, so a resumed run sees the same orders
    loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=sampler is None,
                        sampler=sampler, generator=shuffle)
    net = PolicyGAT(model_cfg)
    if cfg.init_from:
        _warm_start(net, Path(cfg.init_from))
    model = DistributedDataParallel(net) if distributed else net
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    total_steps = cfg.epochs * len(loader)
    warmup = max(1, total_steps // 20)
    clock = {"elapsed": 0.0}  # training seconds so far, so a time budget anneals fully too

    def lr_factor(step: int) -> float:
        """Linear warm-up, then cosine decay to 2% by the last step or the time budget."""
        progress = step / total_steps
        if cfg.time_budget_s:
            progress = max(progress, clock["elapsed"] / cfg.time_budget_s)
        cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return min(1.0, (step + 1) / warmup) * (0.02 + 0.98 * cosine)

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    ckpt_path = out / "checkpoint.pt"
    start_epoch, history = 0, []
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, weights_only=True)
        net.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["opt"])
        sched.load_state_dict(ckpt["sched"])
        start_epoch, history = ckpt["epoch"], ckpt["history"]
        log.info("resumed from %s at epoch %d", ckpt_path, start_epoch)
    train_time = sum(h["epoch_time_s"] for h in history)
    try:
        for epoch in range(start_epoch, cfg.epochs):
            shuffle.manual_seed(cfg.seed + epoch)  # what DistributedSampler.set_epoch does
            if sampler is not None:
                sampler.set_epoch(epoch)
            model.train()
            t_epoch, losses = time.time(), []
            bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=rank != 0)
            for batch in bar:
                loss = batch_loss(model, batch, cfg.tau, cfg.loss_weight)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
                opt.step()
                clock["elapsed"] = _rank0_seconds(train_time + time.time() - t_epoch,
                                                  distributed and bool(cfg.time_budget_s))
                sched.step()
                losses.append(loss.item())
                if len(losses) % 50 == 0:
                    bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
                if cfg.time_budget_s and clock["elapsed"] > cfg.time_budget_s:
                    break
            epoch_time = time.time() - t_epoch
            train_time += epoch_time
            if rank == 0:
                net.eval()
                with torch.no_grad():
                    val_loss = float(np.mean([batch_loss(net, b, cfg.tau, cfg.loss_weight).item()
                                              for b in DataLoader(val_set, batch_size=256)]))
                metrics = validate(net, val_shards, model_cfg.max_successors)
                entry = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "val_loss": val_loss,
                         "epoch_time_s": epoch_time, **metrics}
                history.append(entry)
                log.info("epoch %d: %s", epoch + 1, json.dumps(entry))
                _save_checkpoint(ckpt_path, net, opt, sched, epoch + 1, history)
            if cfg.time_budget_s and clock["elapsed"] > cfg.time_budget_s:
                log.info("time budget of %.0f s reached", cfg.time_budget_s)
                break
    except Interrupted as stop:
        raise stop.saying(_resume_note(ckpt_path, len(history), cfg)) from None
    if rank == 0:
        record = {"config": asdict(cfg), "examples": len(dataset), "data_generation_s": gen_time,
                  "training_s": train_time, "history": history,
                  "torch": torch.__version__, "world_size": int(os.environ.get("WORLD_SIZE", "1"))}
        save_model(net, out / "model", record)
        log.info("model written to %s", out / "model")
    if distributed:
        _leave_process_group()
    return out / "model"


def _resume_note(ckpt_path: Path, done: int, cfg: TrainConfig) -> str:
    """What an interrupted training kept, and how to go on."""
    if not done:
        return (f"no epoch had finished, so no checkpoint; the data in {cfg.data_dir} and "
                f"{cfg.val_dir} are kept, and the same command reuses them")
    return (f"{ckpt_path} holds {done} of {cfg.epochs} epochs; the same command resumes from "
            f"epoch {done + 1}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--config", default="training/configs/default.yaml")
    what.add_argument("--pipeline", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // int(os.environ.get("WORLD_SIZE", "1"))))
    if args.pipeline:
        from rlfm_edge.training.pipeline import load, run

        load(args.pipeline)  # every round checked before any work
        job, again = (lambda: run(args.pipeline)), f"rlfm-edge train --pipeline {args.pipeline}"
    else:
        cfg = TrainConfig.from_yaml(args.config)  # checked whole before any work
        job, again = (lambda: train(cfg)), f"rlfm-edge train --config {args.config}"
    with stop_signals():
        try:
            job()
        except Interrupted as stop:
            print(f"{stop.line('train')} ({again})", file=sys.stderr)
            return stop.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
