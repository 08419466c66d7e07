"""Deep-RL references for the robot benchmark: Stable-Baselines3 DQN and PPO, learning online.

What a user would pick instead of this package: DQN (and PPO) on the raw continuous
observations, with rl_zoo3's tuned hyperparameters. They run online for exactly the
benchmark's number of episodes (a callback stops training once that many episodes have
ended), on the same tasks and the same per-episode reset seeds as the other agents, and the
returns reported are those training episodes' native returns, exploration included, as for
every other agent. Needs the ``bench`` extra (stable-baselines3).

Hyperparameters: rl_zoo3 (github.com/DLR-RM/rl-baselines3-zoo) ``hyperparams/dqn.yml`` and
``hyperparams/ppo.yml`` at commit 22e3ff2450fd92033f7f032915e1f64894a09584 (April 2026; both
files last changed in eec15dc22e1ec7167064aae0c1218eefccaf0ff4), copied below as written there:

* DQN: CartPole-v1 ("Almost Tuned"), MountainCar-v0 and Acrobot-v1 ("Tuned"). Pendulum-v1
  with 3 torque levels has no DQN entry in rl_zoo3 (its Pendulum is continuous): the zoo's
  ``default`` entry (n_timesteps 1e6, MlpPolicy), i.e. SB3's DQN defaults.
* PPO: CartPole-v1 (tuned), MountainCar-v0 and Acrobot-v1 (``normalize: true``: VecNormalize of
  observations and rewards with the entry's gamma, as rl_zoo3 applies it), and Pendulum-v1, whose
  entry is for the continuous torque in [-2, 2]: PPO runs on that continuous action space, not
  on the 3 torque levels the others get. The entries' ``n_envs`` parallel environments are kept
  (a DummyVecEnv, stepped in order, so runs stay deterministic): their episodes are counted as
  they end, and the episodes still running when the count is reached are not reported.

rl_zoo3's schedules run over its ``n_timesteps``: DQN's exploration decays over
``exploration_fraction * n_timesteps`` steps and ``lin_X`` schedules go from X to 0 over
``n_timesteps``. Training here stops at an episode count, not a step count, so the run's own
total is an upper bound on its steps and each schedule is rescaled to keep its shape in
environment steps (after ``n_timesteps`` a linear schedule stays at 0, where rl_zoo3 would have
stopped training).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from rlfm_edge.bench.robot_tasks import RobotTask, episode_seed

ZOO_REPOSITORY = "DLR-RM/rl-baselines3-zoo"
ZOO_COMMIT = "22e3ff2450fd92033f7f032915e1f64894a09584"

DQN_HYPERPARAMS: dict[str, dict] = {
    "CartPole-v1": dict(n_timesteps=5e4, policy="MlpPolicy", learning_rate=2.3e-3, batch_size=64,
                        buffer_size=100000, learning_starts=1000, gamma=0.99,
                        target_update_interval=10, train_freq=256, gradient_steps=128,
                        exploration_fraction=0.16, exploration_final_eps=0.04,
                        policy_kwargs=dict(net_arch=[256, 256])),
    "MountainCar-v0": dict(n_timesteps=1.2e5, policy="MlpPolicy", learning_rate=4e-3,
                           batch_size=128, buffer_size=10000, learning_starts=1000, gamma=0.98,
                           target_update_interval=600, train_freq=16, gradient_steps=8,
                           exploration_fraction=0.2, exploration_final_eps=0.07,
                           policy_kwargs=dict(net_arch=[256, 256])),
    "Acrobot-v1": dict(n_timesteps=1e5, policy="MlpPolicy", learning_rate=6.3e-4, batch_size=128,
                       buffer_size=50000, learning_starts=0, gamma=0.99,
                       target_update_interval=250, train_freq=4, gradient_steps=-1,
                       exploration_fraction=0.12, exploration_final_eps=0.1,
                       policy_kwargs=dict(net_arch=[256, 256])),
}
DQN_DEFAULT = dict(n_timesteps=1e6, policy="MlpPolicy")  # the zoo's ``default`` entry
PPO_HYPERPARAMS: dict[str, dict] = {
    "CartPole-v1": dict(n_envs=8, n_timesteps=1e5, policy="MlpPolicy", n_steps=32, batch_size=256,
                        gae_lambda=0.8, gamma=0.98, n_epochs=20, ent_coef=0.0,
                        learning_rate="lin_0.001", clip_range="lin_0.2"),
    "MountainCar-v0": dict(normalize=True, n_envs=16, n_timesteps=1e6, policy="MlpPolicy",
                           n_steps=16, gae_lambda=0.98, gamma=0.99, n_epochs=4, ent_coef=0.0),
    "Acrobot-v1": dict(normalize=True, n_envs=16, n_timesteps=1e6, policy="MlpPolicy",
                       n_steps=256, gae_lambda=0.94, gamma=0.99, n_epochs=4, ent_coef=0.0),
    "Pendulum-v1": dict(n_envs=4, n_timesteps=1e5, policy="MlpPolicy", n_steps=1024,
                        gae_lambda=0.95, gamma=0.9, n_epochs=10, ent_coef=0.0,
                        learning_rate=1e-3, clip_range=0.2, use_sde=True, sde_sample_freq=4),
}
DEEP_AGENTS = ("dqn", "ppo")


def unavailable_reason() -> str | None:
    """None when stable-baselines3 imports, else why not."""
    try:
        import stable_baselines3  # noqa: F401
    except ImportError as exc:
        return f"stable-baselines3 is not installed ({exc}); pip install 'rlfm_edge[bench]'"
    return None


def hyperparameters(agent: str, task: RobotTask) -> tuple[dict, bool]:
    """(rl_zoo3's entry for the agent on the task, whether PPO acts on the continuous torque)."""
    if agent == "dqn":
        return dict(DQN_HYPERPARAMS.get(task.env_id, DQN_DEFAULT)), False
    if agent == "ppo":
        if task.env_id not in PPO_HYPERPARAMS:
            raise ValueError(f"agents: rl_zoo3 has no PPO hyperparameters for {task.env_id}")
        return dict(PPO_HYPERPARAMS[task.env_id]), task.torques is not None
    raise ValueError(f"agents: {agent!r} is not one of {DEEP_AGENTS}")


class _EpisodeLog:
    """The episodes of a run, in the order they end: native return, steps, terminated."""

    def __init__(self, run_seed: int) -> None:
        self.run_seed = run_seed
        self.resets = 0
        self.returns: list[float] = []
        self.steps: list[int] = []
        self.terminated: list[bool] = []


class _Recorded(gym.Wrapper):
    """Reseeds every reset from the run's episode counter (the other agents' reset seeds) and
    logs each episode's native return; sits under any normalisation."""

    def __init__(self, env: gym.Env, log: _EpisodeLog) -> None:
        super().__init__(env)
        self.log = log
        self._ret, self._steps = 0.0, 0

    def reset(self, *, seed=None, options=None):
        self.log.resets += 1
        self._ret, self._steps = 0.0, 0
        return self.env.reset(seed=episode_seed(self.log.run_seed, self.log.resets - 1),
                              options=options)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._ret += float(reward)
        self._steps += 1
        if terminated or truncated:
            self.log.returns.append(self._ret)
            self.log.steps.append(self._steps)
            self.log.terminated.append(bool(terminated))
        return obs, reward, terminated, truncated, info


def _rescaled(value, n_timesteps: float, run_timesteps: int):
    """rl_zoo3's learning-rate / clip-range value as an SB3 schedule over this run's steps."""
    if isinstance(value, str) and value.startswith("lin_"):
        initial = float(value[4:])

        def schedule(progress_remaining: float) -> float:
            steps = (1.0 - progress_remaining) * run_timesteps
            return initial * max(0.0, 1.0 - steps / n_timesteps)

        return schedule
    return float(value)


def run_deep(agent: str, task: RobotTask, episodes: int, seed: int) -> dict:
    """Train ``agent`` online until ``episodes`` episodes have ended; their returns and steps."""
    reason = unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"agent {agent!r} is unavailable: {reason}")
    import torch
    from stable_baselines3 import DQN, PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    torch.set_num_threads(1)
    hp, continuous = hyperparameters(agent, task)
    zoo_entry = dict(hp)
    n_timesteps = float(hp.pop("n_timesteps"))
    n_envs = int(hp.pop("n_envs", 1))
    normalize = bool(hp.pop("normalize", False))
    log = _EpisodeLog(seed)

    def make() -> gym.Env:
        return _Recorded(gym.make(task.env_id) if continuous else task.make_env(), log)

    venv = DummyVecEnv([make] * n_envs)
    if normalize:
        venv = VecNormalize(venv, gamma=hp["gamma"])
    # an upper bound on the steps until the last counted episode ends: every env may run
    # full-length episodes
    run_timesteps = (episodes + n_envs) * task.episode_cap
    for key in ("learning_rate", "clip_range"):
        if key in hp:
            hp[key] = _rescaled(hp[key], n_timesteps, run_timesteps)
    if agent == "dqn":
        fraction = hp.get("exploration_fraction", 0.1)  # SB3's default
        hp["exploration_fraction"] = fraction * n_timesteps / run_timesteps  # > 1 is fine: linear

    class StopAtEpisodes(BaseCallback):
        def _on_step(self) -> bool:
            return len(log.returns) < episodes

    policy = hp.pop("policy")
    algo = DQN if agent == "dqn" else PPO
    model = algo(policy, venv, seed=seed, device="cpu", verbose=0, **hp)
    model.learn(total_timesteps=run_timesteps, callback=StopAtEpisodes())
    venv.close()
    if len(log.returns) < episodes:
        raise RuntimeError(f"{agent} on {task.name}: only {len(log.returns)} of {episodes} episodes "
                           f"ended within {run_timesteps} steps")
    n = episodes
    returns = np.asarray(log.returns[:n], dtype=np.float64)
    if not np.all(np.isfinite(returns)):
        raise RuntimeError(f"{agent} on {task.name}: non-finite returns")
    return {"returns": returns.tolist(), "steps": log.steps[:n],
            "terminated": log.terminated[:n],
            "hyperparameters": {"source": f"{ZOO_REPOSITORY}@{ZOO_COMMIT}", "entry": zoo_entry,
                                "continuous_actions": continuous,
                                "run_timesteps": run_timesteps}}
