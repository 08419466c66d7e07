"""Gymnasium toy_text adapters: FrozenLake 4x4 / 8x8 (slippery) and CliffWalking.

Built from the source env's own model ``env.unwrapped.P[s][a]``, a list of
(prob, next_state, reward, terminated). Tested with gymnasium 1.4 (the package pins
gymnasium >=1.0,<1.6); ids ``FrozenLake-v1``, ``FrozenLake8x8-v1``, ``CliffWalking-v1``
(CliffWalking was ``-v0`` before gymnasium 1.0).

- Terminal states (every next state of a transition flagged ``terminated``) become
  absorbing: every action stays, with the image under the rescaling of raw reward 0,
  the reward the source episode earns after it ends. Values and optimal policies are
  those of the source env cut at horizon H.
- Mean reward R(s, a) = sum over listed outcomes of prob * reward. FrozenLake's goal
  reward depends on the next state, so with ``reward_dist="deterministic"`` a step
  returns this mean, not the realised 0/1: same expected returns and optimal
  policies, less variance. CliffWalking's rewards are deterministic per (s, a).
- Rewards are rescaled affinely, r' = (r - r_min) / (r_max - r_min), on every step,
  absorbing states included. Every episode has exactly H steps, so returns map by
  R' = (R - H r_min) / (r_max - r_min) and optimal policies are unchanged.
  FrozenLake: r in {0, 1}, r_min = 0, r_max = 1, the identity (goal reward 1, the
  rest 0). CliffWalking: -1 per step, -100 for stepping into the cliff (back to the
  start, not terminal), 0 after the goal: r_min = -100, r_max = 0, r' = (r + 100) / 100,
  so a step earns 0.99, the cliff 0, the absorbing goal 1 per step.

Horizons (our choice; the source envs are undiscounted with a TimeLimit of 100 / 200
steps for FrozenLake and none for CliffWalking): frozenlake4x4 H = 50,
frozenlake8x8 H = 100, cliffwalking H = 50 (the shortest path is 13 steps).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from rlfm_edge.envs._validate import integer
from rlfm_edge.mdp import TabularMDP

FROZENLAKE_4X4_ID = "FrozenLake-v1"
FROZENLAKE_8X8_ID = "FrozenLake8x8-v1"
CLIFFWALKING_ID = "CliffWalking-v1"


def raw_model(env_id: str, **gym_kw) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(P, R_raw, mu0, terminal) of a toy_text env, terminal states absorbing with reward 0.

    R_raw keeps the source env's reward units; ``terminal`` is a boolean mask (S,).
    """
    env = gym.make(env_id, **gym_kw).unwrapped
    S, A = env.observation_space.n, env.action_space.n
    P = np.zeros((S, A, S))
    R = np.zeros((S, A))
    ends = np.zeros(S, dtype=bool)
    goes_on = np.zeros(S, dtype=bool)
    for s in range(S):
        for a in range(A):
            for prob, nxt, reward, terminated in env.P[s][a]:
                P[s, a, nxt] += prob
                R[s, a] += prob * reward
                (ends if terminated else goes_on)[nxt] = True
    if np.any(ends & goes_on):
        raise ValueError(f"{env_id}: termination depends on more than the next state; "
                         "cannot model it with absorbing states")
    P[ends] = 0.0
    R[ends] = 0.0
    for t in np.flatnonzero(ends):
        P[t, :, t] = 1.0
    mu0 = np.asarray(env.initial_state_distrib, dtype=np.float64)
    env.close()
    return P, R, mu0, ends


def _adapter(name: str, env_id: str, horizon: int, r_min: float, r_max: float,
             **gym_kw) -> TabularMDP:
    H = integer("horizon", horizon, 1)
    P, R_raw, mu0, terminal = raw_model(env_id, **gym_kw)
    if R_raw.min() < r_min or R_raw.max() > r_max:
        raise ValueError(f"{env_id}: rewards [{R_raw.min()}, {R_raw.max()}] outside the "
                         f"documented range [{r_min}, {r_max}]; gymnasium changed the env")
    R = (R_raw - r_min) / (r_max - r_min)
    return TabularMDP(P, R, mu0, H, name=name, reward_dist="deterministic",
                      meta={"source": f"gymnasium {gym.__version__} {env_id}",
                            "reward_affine": (r_min, r_max - r_min),
                            "terminal": terminal})


def frozenlake4x4(horizon: int = 50) -> TabularMDP:
    """Slippery FrozenLake 4x4: 16 states, 4 actions."""
    return _adapter("frozenlake4x4", FROZENLAKE_4X4_ID, horizon, 0.0, 1.0, is_slippery=True)


def frozenlake8x8(horizon: int = 100) -> TabularMDP:
    """Slippery FrozenLake 8x8: 64 states, 4 actions."""
    return _adapter("frozenlake8x8", FROZENLAKE_8X8_ID, horizon, 0.0, 1.0, is_slippery=True)


def cliffwalking(horizon: int = 50) -> TabularMDP:
    """CliffWalking 4x12: 48 states, 4 actions, deterministic moves."""
    return _adapter("cliffwalking", CLIFFWALKING_ID, horizon, -100.0, 0.0)
