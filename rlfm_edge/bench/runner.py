"""Experiments over (envs x agents x seeds) online and (envs x behaviours x sizes x seeds)
offline, spread over worker processes, with a progress bar.

Run seeds are ``seed, seed + 1, ..., seed + n_seeds - 1``. Every agent on an env sees the
same environment stream for a given run seed (common random numbers), and offline the
datasets of one run seed are nested: a larger size extends the smaller one. Envs are
named by specs with their parameters (``deepsea:size=20``, :mod:`rlfm_edge.bench.specs`).
Results are plain dicts (arrays for the raw numbers), the input to :mod:`rlfm_edge.bench.report`.
"""

from __future__ import annotations

import functools
import multiprocessing as mp
import os
import sys
from collections.abc import Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from rlfm_edge.bench.datasets import generate_dataset, parse_behaviour
from rlfm_edge.bench.offline import check_method_names, run_offline
from rlfm_edge.bench.online import check_agent_name, check_count, run_online
from rlfm_edge.bench.specs import make_env
from rlfm_edge.interrupt import Interrupted, signals_held, worker_init
from rlfm_edge.mdp import TabularMDP
from rlfm_edge.planning import optimal_value


@functools.lru_cache(maxsize=32)
def _make_env(spec: str) -> TabularMDP:
    return make_env(spec)


def check_env_names(specs: Sequence[str]) -> list[str]:
    """The env specs (``riverswim``, ``deepsea:size=20``) as a list, each checked by building
    it once, or a ValueError naming the first that does not build."""
    specs = list(specs)
    if not specs:
        raise ValueError("envs: expected at least one environment")
    for spec in specs:
        _make_env(spec)
    return specs


def _nonempty(field: str, values: Sequence) -> list:
    values = list(values)
    if not values:
        raise ValueError(f"{field}: expected at least one value")
    if len(set(values)) != len(values):
        raise ValueError(f"{field}: has duplicates: {values}")
    return values


def _worker_init() -> None:
    """Ctrl-C reaches the parent only (it stops the pool). One thread per worker: the workers
    already fill the cores, and torch's intra-op threads on top of them spin against each
    other (a 6 ms refresh took 200 ms with two 2-thread workers on 2 cores)."""
    worker_init()
    os.environ["OMP_NUM_THREADS"] = "1"
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def run_jobs(fn: Callable, jobs: list[tuple], workers: int | None, progress: bool, desc: str):
    """fn(*job) for every job, in job order; parallel over ``workers`` processes.

    On Ctrl-C or SIGTERM the workers are stopped and ``Interrupted`` is raised with
    ``partial``: the results in job order, None for the jobs that had not finished.
    """
    workers = min(os.cpu_count() or 1, len(jobs)) if workers is None else check_count(
        "workers", workers
    )
    out: list = [None] * len(jobs)
    bar = tqdm(total=len(jobs), desc=desc, disable=not progress, unit="run")
    try:
        if workers == 1:
            for i, job in enumerate(jobs):
                out[i] = fn(*job)
                bar.update()
            return out
        # A multiprocessing Pool, not a ProcessPoolExecutor: leaving its block terminates the
        # workers, where the executor would wait for every job already running.
        with signals_held():
            pool = mp.Pool(workers, initializer=_worker_init)
        with pool:
            for i, result in pool.imap_unordered(functools.partial(_indexed, fn), enumerate(jobs)):
                out[i] = result
                bar.update()
        return out
    except Interrupted as stop:
        stop.partial = out
        raise
    finally:
        bar.close()


def _run_assembled(fn: Callable, jobs: list[tuple], assemble: Callable, config: dict,
                   workers: int | None, progress: bool, desc: str) -> dict:
    """``assemble(config, run_jobs(...))``; on Ctrl-C or SIGTERM the Interrupted that goes
    up carries the assembled results of the jobs that finished in ``partial``."""
    try:
        out = run_jobs(fn, jobs, workers, progress, desc)
    except Interrupted as stop:
        stop.partial = assemble(config, stop.partial)
        raise
    return assemble(config, out)


def _indexed(fn: Callable, item: tuple[int, tuple]):
    i, job = item
    return i, fn(*job)


def _online_job(env: str, agent: str, episodes: int, seed: int, agent_kw: dict) -> np.ndarray:
    return run_online(_make_env(env), agent, episodes, seed=seed, **agent_kw)


def run_online_experiment(
    envs: Sequence[str],
    agents: Sequence[str],
    episodes: int,
    n_seeds: int,
    seed: int = 0,
    agent_kw: dict[str, dict] | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> dict:
    """Returns per env: V*, sizes and ``returns[agent]`` of shape (n_seeds, episodes)."""
    envs = _nonempty("envs", check_env_names(envs))
    agents = _nonempty("agents", agents)
    for agent in agents:
        check_agent_name(agent)
    agent_kw = dict(agent_kw or {})
    for name in agent_kw:
        if name not in agents:
            raise ValueError(
                f"agent_kw: {name!r} is not among the agents run ({', '.join(agents)})"
            )
    episodes = check_count("episodes", episodes)
    seeds = range(check_count("seed", seed, 0), seed + check_count("seeds", n_seeds))
    jobs = [(e, a, episodes, s, agent_kw.get(a, {})) for e in envs for a in agents for s in seeds]
    config = {"envs": envs, "agents": agents, "episodes": episodes, "seeds": list(seeds),
              "agent_kw": agent_kw}
    return _run_assembled(_online_job, jobs, _assemble_online, config, workers, progress,
                          "bench online")


def _assemble_online(config: dict, out: list) -> dict:
    """The results of the finished runs (``out`` in job order, None where a run did not
    finish); an interrupted experiment says how many finished in ``partial``."""
    results: dict = {"kind": "online", "config": config, "envs": {}}
    runs = iter(out)
    for env in config["envs"]:
        returns = {}
        for agent in config["agents"]:
            rows = [r for r in (next(runs) for _ in config["seeds"]) if r is not None]
            if rows:
                returns[agent] = np.stack(rows)
        if returns:
            mdp = _make_env(env)
            results["envs"][env] = {"v_star": optimal_value(mdp), "n_states": mdp.n_states,
                                    "n_actions": mdp.n_actions, "horizon": mdp.horizon,
                                    "returns": returns}
    _mark_partial(results, out)
    return results


def _mark_partial(results: dict, out: list) -> None:
    finished = sum(r is not None for r in out)
    if finished < len(out):
        results["partial"] = {"finished_runs": finished, "runs": len(out)}


def _offline_job(env: str, behaviour: str, size: int, seed: int, methods: list[str]) -> list:
    mdp = _make_env(env)
    data = generate_dataset(mdp, behaviour, size * mdp.horizon, seed=seed)
    return [run_offline(mdp, data, m) for m in methods]


def run_offline_experiment(
    envs: Sequence[str],
    methods: Sequence[str],
    sizes: Sequence[int],
    behaviours: Sequence[str],
    n_seeds: int,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
) -> dict:
    """Values V^pi(mu0) of each method's policy, per env, behaviour and size (in units of H).

    Returns per env: V*, the behaviours' own values, and ``values[behaviour][size][method]``
    of shape (n_seeds,).
    """
    envs = _nonempty("envs", check_env_names(envs))
    methods = check_method_names(_nonempty("methods", methods))
    sizes = _nonempty("sizes", [check_count("sizes", s) for s in sizes])
    specs = [parse_behaviour(b).spec for b in _nonempty("behaviours", behaviours)]
    seeds = range(check_count("seed", seed, 0), seed + check_count("seeds", n_seeds))
    jobs = [(e, b, n, s, methods) for e in envs for b in specs for n in sizes for s in seeds]
    config = {"envs": envs, "methods": methods, "sizes": sizes, "behaviours": specs,
              "seeds": list(seeds)}
    return _run_assembled(_offline_job, jobs, _assemble_offline, config, workers, progress,
                          "bench offline")


def _assemble_offline(config: dict, out: list) -> dict:
    """As _assemble_online: the cells (env, behaviour, size) with at least one finished seed."""
    results: dict = {"kind": "offline", "config": config, "envs": {}}
    runs = iter(out)
    for env in config["envs"]:
        values: dict = {}
        for b in config["behaviours"]:
            for n in config["sizes"]:
                rows = [r for r in (next(runs) for _ in config["seeds"]) if r is not None]
                if rows:
                    per_seed = np.array(rows)  # (seeds, methods)
                    values.setdefault(b, {})[n] = {m: per_seed[:, i]
                                                   for i, m in enumerate(config["methods"])}
        if values:
            mdp = _make_env(env)
            results["envs"][env] = {
                "v_star": optimal_value(mdp), "n_states": mdp.n_states,
                "n_actions": mdp.n_actions, "horizon": mdp.horizon,
                "behaviour_values": {b: parse_behaviour(b).value(mdp) for b in values},
                "values": values}
    _mark_partial(results, out)
    return results
