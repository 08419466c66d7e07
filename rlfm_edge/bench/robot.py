"""`rlfm-edge bench robot`: the robot path on Gymnasium control tasks, in simulated time.

One run is one agent learning one task from scratch for a number of episodes with one seed.
Every discrete-state agent sees the same stream: the task's dynamics -> the robot config's
Discretizer -> state index, reward scaled to [0, 1], a termination entering the absorbing
state of the task's kind and a time limit only ending the episode, exactly as `serve` hands
them to the agent (robot_actors.py). Episode e of run seed s starts from the reset seed
``episode_seed(s, e)`` for every agent, the deep-RL references included (robot_deep.py).

Runs are independent processes (spawned, one per run, with torch and ONNX Runtime on one
thread), spread over ``workers`` (default: one per core). Each finished run is written at
once to ``<out>/runs/<task>__<agent>__<seed>.json``; a rerun with the same options skips the
runs already there (resume), and Ctrl-C stops the worker processes and keeps, and reports,
the finished ones. A run file records what it was run with (``fingerprint``); one that differs from the
options asked for is refused rather than mixed in.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import multiprocessing.connection
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from rlfm_edge.atomic import atomic_write_bytes
from rlfm_edge.bench.robot_actors import ONLINE_AGENTS, TABULAR_AGENTS, make_actor
from rlfm_edge.bench.robot_deep import DEEP_AGENTS
from rlfm_edge.bench.robot_tasks import TASKS, RobotTask, episode_seed, get_task, robot_config
from rlfm_edge.runtime.online_agent import terminal_kinds
from rlfm_edge.runtime.robot_config import RobotConfig

AGENTS = (*ONLINE_AGENTS, *TABULAR_AGENTS, *DEEP_AGENTS)
RUN_FORMAT = 1


def run_discrete(task: RobotTask, actor, episodes: int, seed: int) -> dict:
    """Drive ``actor`` (OnlineAgent or TabularActor) through ``episodes`` episodes of ``task``."""
    env = task.make_env()
    returns, steps, terminated = [], [], []
    try:
        for episode in range(episodes):
            obs, _ = env.reset(seed=episode_seed(seed, episode))
            reward, ret, n = None, 0.0, 0
            while True:
                action = actor.step(obs, reward)
                obs, native, term, trunc, _ = env.step(action)
                ret += float(native)
                n += 1
                reward = task.scale(native)
                if term:  # an absorbing end: a fall or a goal
                    actor.terminate(reward, obs, kind=task.terminal)
                    break
                if trunc:  # the time limit: the last transition, and nothing absorbing
                    actor.step(obs, reward)
                    actor.end_episode()
                    break
            returns.append(ret)
            steps.append(n)
            terminated.append(bool(term))
    finally:
        actor.close()
        env.close()
    return {"returns": returns, "steps": steps, "terminated": terminated}


def check_config(task: RobotTask, config: RobotConfig, source: str) -> None:
    """The robot config must describe the task's observations, actions and terminations."""
    n_obs = task.make_env().observation_space.shape[0]
    if config.discretizer.n_dims != n_obs:
        raise ValueError(f"{source}: discretizer.dimensions: {config.discretizer.n_dims} dimensions, "
                         f"but {task.env_id} observations have {n_obs} values")
    if config.n_actions != task.n_actions:
        raise ValueError(f"{source}: n_actions: {config.n_actions}, but the task {task.name} has "
                         f"{task.n_actions} actions")
    if task.terminal is not None and task.terminal not in terminal_kinds(config.terminal_state):
        raise ValueError(f"{source}: terminal_state: {task.env_id} terminates in a "
                         f"{task.terminal!r} state; set terminal_state: {task.terminal}")


def load_configs(tasks: Sequence[str], config_dir: str | os.PathLike | None) -> dict[str, dict]:
    """Per task, the robot config mapping: ``<config_dir>/<task>.yaml``, else the bins rule's."""
    from rlfm_edge.discretize import load_yaml

    out = {}
    for name in tasks:
        task = get_task(name)
        if config_dir is None:
            raw, source = robot_config(task), f"robot config for {name} (bins rule)"
        else:
            path = Path(config_dir) / f"{name}.yaml"
            raw, source = load_yaml(path, "robot config"), str(path)
        check_config(task, RobotConfig.from_dict(raw, source=source), source)
        out[name] = raw
    return out


def model_fingerprint(model: str | os.PathLike | None) -> str:
    """sha256 of the model directory's manifest (which lists every model file's sha256)."""
    from rlfm_edge.model.io import DEFAULT_MODEL_DIR, MANIFEST

    path = Path(model if model is not None else DEFAULT_MODEL_DIR) / MANIFEST
    if not path.is_file():
        raise ValueError(f"--model: {path.parent} has no {MANIFEST}")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fingerprint(agent: str, episodes: int, config: dict, backend: str, model_sha: str | None) -> dict:
    """What decides a run's numbers besides its task, agent and seed."""
    out: dict = {"format": RUN_FORMAT, "episodes": episodes}
    if agent not in DEEP_AGENTS:
        out["config_sha256"] = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()
    if agent == "rlfm":
        out.update(backend=backend, model_sha256=model_sha)
    return out


def run_path(out: Path, task: str, agent: str, seed: int) -> Path:
    return out / "runs" / f"{task}__{agent}__{seed}.json"


def run_one(task_name: str, agent: str, seed: int, episodes: int, config: dict, backend: str,
            model: str | None, print_: dict, path: str | None = None) -> dict:
    """One run (in its own process); written to ``path`` when given. ``print_`` is its fingerprint."""
    cpu0, wall0 = time.process_time(), time.perf_counter()
    task = get_task(task_name)
    if agent in DEEP_AGENTS:
        from rlfm_edge.bench.robot_deep import run_deep

        record = run_deep(agent, task, episodes, seed)
    else:
        cfg = RobotConfig.from_dict(config, source=f"robot config for {task_name}")
        actor = make_actor(agent, cfg, seed, backend, model)
        record = run_discrete(task, actor, episodes, seed)
        if agent in ONLINE_AGENTS:
            c = actor.counters
            record["refreshes"], record["refresh_failures"] = c.refreshes, c.refresh_failures
            if c.refresh_failures:
                raise RuntimeError(f"{agent} on {task_name} seed {seed}: {c.refresh_failures} policy "
                                   f"refreshes failed; the run is not what the agent would do")
    record.update(task=task_name, agent=agent, seed=seed, fingerprint=print_,
                  cpu_s=time.process_time() - cpu0, wall_s=time.perf_counter() - wall0)
    if path is not None:
        atomic_write_bytes(path, (json.dumps(record) + "\n").encode())
    return record


def _existing(path: Path, print_: dict) -> dict | None:
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable run file ({exc}); delete it to rerun") from None
    if record.get("fingerprint") != print_:
        raise ValueError(f"{path}: was run with other options ({record.get('fingerprint')} vs "
                         f"{print_}); use another --out or delete it")
    return record


def run_robot_experiment(tasks: Sequence[str], agents: Sequence[str], episodes: int, n_seeds: int,
                         out: str | os.PathLike, seed: int = 0, backend: str = "torch",
                         model: str | None = None, config_dir: str | None = None,
                         workers: int | None = None, progress: bool = True) -> dict:
    """Run (or resume) every task x agent x seed; returns the runs found and whether all finished.

    Returns {"config": ..., "runs": {(task, agent, seed): record}, "complete": bool,
    "resumed": how many runs were already on disk}.
    """
    tasks, agents = _names("tasks", tasks, TASKS), _names("agents", agents, AGENTS)
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes: expected a positive integer, got {episodes!r}")
    if isinstance(n_seeds, bool) or not isinstance(n_seeds, int) or n_seeds < 1:
        raise ValueError(f"seeds: expected a positive integer, got {n_seeds!r}")
    if any(a in DEEP_AGENTS for a in agents):
        from rlfm_edge.bench.robot_deep import unavailable_reason

        if (reason := unavailable_reason()) is not None:
            raise RuntimeError(f"agents dqn/ppo: {reason}")
    configs = load_configs(tasks, config_dir)
    model_sha = None
    if "rlfm" in agents:
        from rlfm_edge.bench.robot_actors import make_engine_for

        engine = make_engine_for("rlfm", backend, model)
        for name, raw in configs.items():  # a config the model cannot serve fails now, by name
            cfg = RobotConfig.from_dict(raw, source=f"robot config for {name}")
            cfg.discretizer.check_fits(engine.max_states - len(terminal_kinds(cfg.terminal_state)))
        model_sha = model_fingerprint(model)
        del engine
    out = Path(out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    seeds = list(range(seed, seed + n_seeds))
    runs: dict = {}
    jobs = []
    for s in seeds:  # seed by seed: an interrupted bench leaves whole seeds for paired comparisons
        for t in tasks:
            for a in agents:
                print_ = fingerprint(a, episodes, configs[t], backend, model_sha)
                path = run_path(out, t, a, s)
                record = _existing(path, print_)
                if record is not None:
                    runs[t, a, s] = record
                else:
                    jobs.append((t, a, s, episodes, configs[t], backend, model, print_, str(path)))
    config = {"tasks": tasks, "agents": agents, "episodes": episodes, "seeds": seeds,
              "backend": backend, "model": model, "model_sha256": model_sha,
              "config_dir": config_dir}
    resumed = len(runs)
    complete = _run_jobs(jobs, runs, workers, progress, resumed=resumed)
    return {"config": config, "runs": runs, "complete": complete, "resumed": resumed}


def _child(job: tuple) -> None:
    """A worker process: one run, written to its file (the parent reads it from there)."""
    os.environ["OMP_NUM_THREADS"] = "1"  # before torch or ONNX Runtime is imported
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    run_one(*job)


def _run_jobs(jobs: list[tuple], runs: dict, workers: int | None, progress: bool,
              resumed: int) -> bool:
    """Each job in a fresh spawned process, ``workers`` at a time; False when Ctrl-C stopped them.

    A process per run keeps runs independent (no state carried from one to the next) and
    makes stopping simple: the parent terminates the processes still running.
    """
    if not jobs:
        return True
    workers = min(os.cpu_count() or 1, len(jobs)) if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers: expected a positive integer, got {workers}")
    context = multiprocessing.get_context("spawn")
    bar = tqdm(total=len(jobs) + resumed, initial=resumed, desc="bench robot", unit="run",
               disable=not progress, dynamic_ncols=True)
    queue, live = list(jobs), {}
    try:
        while queue or live:
            while queue and len(live) < workers:
                job = queue.pop(0)
                process = context.Process(target=_child, args=(job,), daemon=True)
                process.start()
                live[process.sentinel] = (process, job)
            for sentinel in multiprocessing.connection.wait(list(live)):
                process, job = live.pop(sentinel)
                process.join()
                task, agent, seed = job[:3]
                if process.exitcode != 0:
                    raise RuntimeError(f"run {task}/{agent}/seed {seed} failed (exit code "
                                       f"{process.exitcode}; its error is printed above)")
                runs[task, agent, seed] = record = json.loads(Path(job[-1]).read_text())
                bar.set_postfix_str(f"{task}/{agent}/{seed}: {np.mean(record['returns']):.1f}",
                                    refresh=False)
                bar.update()
    except KeyboardInterrupt:
        return False  # the finished runs are on disk; the ones in progress are lost
    finally:
        for process, _ in live.values():
            process.terminate()
        for process, _ in live.values():
            process.join()
        bar.close()
    return True


def _names(field: str, values: Sequence[str], known) -> list[str]:
    values = list(values)
    if not values:
        raise ValueError(f"{field}: expected at least one name")
    for v in values:
        if v not in known:
            raise ValueError(f"{field}: unknown name {v!r}; expected some of {', '.join(known)}")
    if len(set(values)) != len(values):
        raise ValueError(f"{field}: has duplicates: {values}")
    return values
