"""Training examples: (statistics of some experience in a prior MDP, Q* of the true MDP).

For each MDP drawn from the prior, a behaviour collects K episodes of experience:
- uniform:      uniformly random actions;
- eps_optimal:  epsilon-greedy on the true Q*, epsilon ~ U[0.1, 1];
- psrl:         posterior sampling in rounds (a new posterior sample every few
                episodes), the kind of data an efficient online explorer collects;
- mixed:        a uniform first part followed by an eps_optimal part;
- model:        the current model itself, sampling actions from softmax(logits /
                ``model_temperature``, cooled per state by ``model_anneal_visits`` as the
                deployed agent does) and re-reading the policy a few times (DAgger-style
                rounds): the data the deployed agent will really see. Needs ``model_dir``.
                ``model_refresh`` "rounds" re-reads it 2-7 times at equal intervals;
                "doubling" after episodes 1, 2, 4, 8, ..., closer to the deployed agent,
                which re-reads it after every episode and changes most early on.
K is 0 with probability ``p_empty`` (acting with no data at all), otherwise log-uniform
in [1, max_episodes], capped at ``max_transitions``. The target stored is Q*_0 of the
TRUE MDP scaled by its range, so the training temperature can change without
regenerating data: target policy = softmax(q_scaled / tau).

Examples are stored in npz shards (no pickle): features concatenated, with offsets.
"""

from __future__ import annotations

import io
import json
import multiprocessing as mp
import time
import zipfile
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from rlfm_edge.agents.base import check_positive_float
from rlfm_edge.atomic import atomic_write_bytes
from rlfm_edge.inference.base import action_probabilities, state_temperatures
from rlfm_edge.interrupt import Interrupted, signals_held, worker_init
from rlfm_edge.mdp import TabularMDP
from rlfm_edge.model.features import GraphFeatures, base_features, horizon_of, with_plan_features
from rlfm_edge.planning import backward_induction, value_iteration
from rlfm_edge.stats import CountStats
from training.prior import PriorConfig, sample_mdp
from training.rollout import rollout

BEHAVIOURS = ("uniform", "eps_optimal", "psrl", "mixed", "model")


@dataclass(frozen=True)
class DataConfig:
    max_episodes: int = 300
    max_transitions: int = 20000
    p_empty: float = 0.05
    behaviour_weights: tuple[float, ...] = (0.3, 0.25, 0.3, 0.15, 0.0)  # in BEHAVIOURS order
    max_successors: int = 8
    model_dir: str = ""  # the model that the "model" behaviour runs
    model_temperature: float = 1.0
    model_refresh: str = "rounds"  # or "doubling"
    model_anneal_visits: float | None = None  # cool per state as deployed (None: fixed temperature)

    def __post_init__(self) -> None:
        w = np.asarray(self.behaviour_weights, dtype=float)
        if w.shape != (len(BEHAVIOURS),) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError(f"data.behaviour_weights: expected {len(BEHAVIOURS)} non-negative "
                             f"weights for {BEHAVIOURS}, got {self.behaviour_weights!r}")
        if w[BEHAVIOURS.index("model")] > 0 and not self.model_dir:
            raise ValueError("data.model_dir: the 'model' behaviour needs a model directory")
        if not self.model_temperature > 0:
            raise ValueError(f"data.model_temperature: expected > 0, got {self.model_temperature!r}")
        if self.model_anneal_visits is not None:  # the same rule as the deployed agents'
            check_positive_float("data.model_anneal_visits", self.model_anneal_visits)
        if self.model_refresh not in ("rounds", "doubling"):
            raise ValueError(f"data.model_refresh: expected 'rounds' or 'doubling', got "
                             f"{self.model_refresh!r}")


def greedy_probs(Q: np.ndarray) -> np.ndarray:
    """Greedy action probabilities on Q, ties shared (so a tie never means "action 0")."""
    best = Q.max(axis=-1, keepdims=True) == Q
    return best / best.sum(axis=-1, keepdims=True)


def epsilon_greedy(Q: np.ndarray, eps: float) -> np.ndarray:
    """Action probabilities of epsilon-greedy on Q: uniform w.p. eps, else greedy_probs."""
    return eps * (1.0 / Q.shape[-1]) + (1 - eps) * greedy_probs(Q)


def _psrl_rounds(mdp: TabularMDP, episodes: int, rng: np.random.Generator) -> CountStats:
    stats = CountStats(mdp.n_states, mdp.n_actions)
    rounds = int(rng.integers(2, 9))
    for n in np.array_split(np.arange(episodes), rounds):
        if not n.size:
            continue
        P = np.stack([[rng.dirichlet(1.0 / mdp.n_states + stats.n_sas[s, a])
                       for a in range(mdp.n_actions)] for s in range(mdp.n_states)])
        R = rng.beta(1.0 + stats.reward_sum, 1.0 + stats.n_sa - stats.reward_sum)
        Q, _ = backward_induction(P, R, mdp.horizon)
        rollout(mdp, greedy_probs(Q), n.size, rng, stats)
    return stats


_ENGINES: dict[str, object] = {}


def _model_policy(model_dir: str):
    """One TorchEngine per worker process and model directory."""
    if model_dir not in _ENGINES:
        import torch

        from rlfm_edge.inference.torch_backend import TorchEngine

        torch.set_num_threads(1)
        _ENGINES[model_dir] = TorchEngine(model_dir, device="cpu")
    return _ENGINES[model_dir].policy


def _model_rounds(mdp: TabularMDP, episodes: int, rng: np.random.Generator,
                  cfg: DataConfig) -> CountStats:
    policy = _model_policy(cfg.model_dir)
    stats = CountStats(mdp.n_states, mdp.n_actions)
    if cfg.model_refresh == "doubling":
        ends = [1 << k for k in range(max(episodes, 1).bit_length())] + [episodes]
        sizes = np.diff([0] + [e for e in ends if e <= episodes])
    else:
        sizes = [n.size for n in np.array_split(np.arange(episodes), int(rng.integers(3, 9)))]
    for n in sizes:
        if not n:
            continue
        temperature = state_temperatures(cfg.model_temperature, stats.n_sa.sum(axis=1),
                                         cfg.model_anneal_visits)
        p = action_probabilities(policy(stats, mdp.horizon), temperature)
        rollout(mdp, np.broadcast_to(p, (mdp.horizon, *p.shape)), int(n), rng, stats)
    return stats


def collect(mdp: TabularMDP, Q_star: np.ndarray, behaviour: str, episodes: int,
            rng: np.random.Generator, cfg: DataConfig | None = None) -> CountStats:
    """Experience of ``episodes`` episodes of ``behaviour`` in ``mdp``."""
    S, A, H = mdp.n_states, mdp.n_actions, mdp.horizon
    uniform = np.full((H, S, A), 1.0 / A)
    if behaviour == "uniform":
        return rollout(mdp, uniform, episodes, rng)
    if behaviour == "eps_optimal":
        eps = rng.uniform(0.1, 1.0)
        return rollout(mdp, epsilon_greedy(Q_star, eps), episodes, rng)
    if behaviour == "psrl":
        return _psrl_rounds(mdp, episodes, rng)
    if behaviour == "mixed":
        k = int(rng.integers(0, episodes + 1))
        stats = rollout(mdp, uniform, k, rng)
        eps = rng.uniform(0.1, 0.5)
        return rollout(mdp, epsilon_greedy(Q_star, eps), episodes - k, rng, stats)
    if behaviour == "model":
        if cfg is None or not cfg.model_dir:
            raise ValueError("behaviour 'model': needs a DataConfig with model_dir")
        return _model_rounds(mdp, episodes, rng, cfg)
    raise ValueError(f"behaviour: expected one of {BEHAVIOURS}, got {behaviour!r}")


def _normalised(weights) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    return w / w.sum()


def scaled_q(Q0: np.ndarray) -> np.ndarray:
    """Q*_0 divided by its range over all (s, a), so targets are scale-free."""
    return (Q0 - Q0.min()) / max(float(np.ptp(Q0)), 1e-6)


def make_example(seed: int, prior: PriorConfig, cfg: DataConfig) -> tuple[GraphFeatures, np.ndarray, dict]:
    """(base features, scaled Q*_0, info): the base features are what a shard stores; the
    plan features are added where the examples are read (load_shard, or with_plan_features
    with info["H"])."""
    rng = np.random.default_rng(seed)
    mdp = sample_mdp(rng, prior)
    Q, _ = value_iteration(mdp)
    behaviour = BEHAVIOURS[rng.choice(len(BEHAVIOURS), p=_normalised(cfg.behaviour_weights))]
    if rng.random() < cfg.p_empty:
        episodes = 0
    else:
        episodes = int(np.exp(rng.uniform(0.0, np.log(cfg.max_episodes))))
        episodes = max(0, min(episodes, cfg.max_transitions // mdp.horizon))
    stats = collect(mdp, Q, behaviour, episodes, rng, cfg)
    feats = base_features(stats, mdp.horizon, cfg.max_successors)
    info = {"seed": seed, "family": mdp.meta["family"], "behaviour": behaviour,
            "episodes": episodes, "S": mdp.n_states, "A": mdp.n_actions, "H": mdp.horizon}
    return feats, scaled_q(Q[0]).astype(np.float32), info


_FIELDS = ("state_x", "sa_x", "edge_state", "edge_sa", "edge_slot", "edge_attr")


def save_shard(path: Path, examples: list) -> None:
    """Concatenate examples into one npz with per-example sizes.

    Examples hold base features (make_example): load_shard recomputes the plan features from
    them, so shards outlive changes to those.
    """
    arrays = {f: np.concatenate([getattr(g, f) for g, _, _ in examples]) for f in _FIELDS}
    arrays["q"] = np.concatenate([q.reshape(-1) for _, q, _ in examples])
    arrays["n_states"] = np.array([g.n_states for g, _, _ in examples], np.int64)
    arrays["n_actions"] = np.array([g.n_actions for g, _, _ in examples], np.int64)
    arrays["n_edges"] = np.array([g.edge_sa.size for g, _, _ in examples], np.int64)
    arrays["seed"] = np.array([i["seed"] for _, _, i in examples], np.int64)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    # whole or absent, under a name no shard pattern matches while it is written
    atomic_write_bytes(path, buf.getvalue())


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of a shard; a damaged one raises rather than being regenerated, because it may
    be a replay shard whose generator settings are unknown here, and damage means a disk to check."""
    try:
        with np.load(path, allow_pickle=False) as z:
            a = {k: z[k] for k in z.files}
        missing = {*_FIELDS, "q", "n_states", "n_actions", "n_edges"} - set(a)
        if missing:
            raise KeyError(f"no {sorted(missing)}")
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise ValueError(f"{path}: unreadable shard ({type(exc).__name__}: {exc}); "
                         f"delete it to regenerate it") from None
    return a


def load_shard(path: Path) -> list[tuple[GraphFeatures, np.ndarray]]:
    a = _read_npz(path)
    out = []
    s_off = sa_off = e_off = 0
    for S, A, E in zip(a["n_states"], a["n_actions"], a["n_edges"], strict=True):
        S, A, E = int(S), int(A), int(E)
        g = GraphFeatures(
            S, A, a["state_x"][s_off:s_off + S], a["sa_x"][sa_off:sa_off + S * A],
            a["edge_state"][e_off:e_off + E], a["edge_sa"][e_off:e_off + E],
            a["edge_slot"][e_off:e_off + E], a["edge_attr"][e_off:e_off + E])
        g = with_plan_features(g, horizon_of(g))
        out.append((g, a["q"][sa_off:sa_off + S * A].reshape(S, A)))
        s_off, sa_off, e_off = s_off + S, sa_off + S * A, e_off + E
    return out


def _worker(args):
    seeds, prior, cfg = args
    return [make_example(int(s), prior, cfg) for s in seeds]


def _settings(config: dict) -> dict:
    """The config with the prior's and data's fields named one by one, for a message that says which."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{field}": v for field, v in value.items()})
        else:
            flat[key] = value
    return flat


def _check_cache(config_path: Path, config: dict) -> None:
    """Refuse a folder made with other settings: its shards would be silently reused, since a shard
    is kept whenever its file exists."""
    if not config_path.exists():
        return
    try:
        cached = json.loads(config_path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{config_path}: unreadable ({exc}); delete its folder to regenerate") from None
    cached, config = _settings(cached), _settings(config)
    differ = sorted(k for k in cached.keys() | config.keys() if cached.get(k) != config.get(k))
    if differ:
        raise ValueError(f"{config_path.parent}: holds examples made with other {differ} "
                         f"({config_path}); use another data folder or delete this one")


GENERATION_FILE = "generation.json"  # seconds spent making a data folder's shards, all runs together


def generation_seconds(out_dir: Path) -> float | None:
    """What making this folder's shards cost, so a run that reuses them can still report it
    (None when the folder does not say)."""
    try:
        seconds = json.loads((Path(out_dir) / GENERATION_FILE).read_text())["seconds"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return float(seconds) if isinstance(seconds, (int, float)) else None


def _add_generation_seconds(out_dir: Path, seconds: float) -> None:
    total = (generation_seconds(out_dir) or 0.0) + seconds
    atomic_write_bytes(out_dir / GENERATION_FILE, json.dumps({"seconds": total}).encode())


def generate(out_dir: Path, n_examples: int, seed: int, prior: PriorConfig, cfg: DataConfig,
             shard_size: int = 2000, workers: int = 2) -> list[Path]:
    """Write ``n_examples`` examples as shards in out_dir; existing complete shards are kept."""
    out_dir.mkdir(parents=True, exist_ok=True)
    config = {"prior": asdict(prior), "data": asdict(cfg), "seed": seed, "n_examples": n_examples,
              "shard_size": shard_size}
    config_path = out_dir / "config.json"
    _check_cache(config_path, json.loads(json.dumps(config)))
    seeds = np.random.SeedSequence(seed).generate_state(n_examples, dtype=np.uint32)
    shards = []
    todo = []
    for i, start in enumerate(range(0, n_examples, shard_size)):
        path = out_dir / f"shard_{seed}_{i:04d}.npz"
        shards.append(path)
        if not path.exists():
            todo.append((path, seeds[start:start + shard_size]))
    if not todo:
        return shards
    config_path.write_text(json.dumps(config, indent=1))
    chunk = 100
    start = time.perf_counter()
    try:
        with signals_held():
            pool = mp.get_context("spawn").Pool(workers, initializer=worker_init)
        with pool, tqdm(total=sum(len(s) for _, s in todo), desc="generate", unit="mdp") as bar:
            for path, shard_seeds in todo:
                jobs = [(shard_seeds[i:i + chunk], prior, cfg)
                        for i in range(0, len(shard_seeds), chunk)]
                examples = []
                for part in pool.imap(_worker, jobs):
                    examples.extend(part)
                    bar.update(len(part))
                save_shard(path, examples)
                _add_generation_seconds(out_dir, time.perf_counter() - start)
                start = time.perf_counter()
    except Interrupted as stop:
        done = sum(p.exists() for p in shards)
        raise stop.saying(f"kept the {done} of {len(shards)} finished data shards in {out_dir} "
                          f"(the one in progress is not written); the same command reuses them "
                          f"and makes the rest") from None
    return shards
