"""The "robot" prior family: tabular MDPs that a robot's bins make of a continuous system.

A robot running rlfm-edge sees a physical system through a Discretizer: its counts come from
continuous dynamics cut into bins, with absorbing failures (the pole fell) and goals (the car
reached the flag), episodes far longer than the planning horizon, and transitions blurred by
what a bin hides. This family draws such systems at random and returns the tabular MDP their
discretization induces, so the model is trained on what robots produce. The ranges below were
written down before any robot benchmark was run; they are wide on purpose and are not the
constants of the benchmark tasks (rlfm-edge bench robot), which they merely contain.

Systems (``SYSTEMS``; parameters drawn per MDP, log-uniform where "log"):
- point_mass: x in [-1, 1], v' = v + dt (u / m - c v) + noise, x' = x + dt v'; m log [0.5, 5],
  friction c [0, 2], force limit log [0.5, 5] (the largest |u|), dt log [0.02, 0.1]. The walls
  at +-1 are a failure (half of the MDPs) or stop the mass.
- pendulum: theta (0 upright), theta'' = (g/l) sin(theta) - b theta' + u / (m l^2); g/l
  [5, 20], damping b [0, 0.5], torque limit [0.2, 1.5] x m g l (below 1 the pendulum must pump
  energy to swing up), dt log [0.02, 0.1], |theta'| clipped at [4, 12]. Observed as (theta,
  theta') or as (cos, sin, theta') like Gymnasium's Pendulum.
- cart_pole: the classic cart-pole equations (Barto, Sutton, Anderson 1983) with cart mass log
  [0.3, 3], pole mass log [0.03, 0.5], half-length [0.2, 1], force [3, 20], dt [0.01, 0.05],
  failure when |theta| > [0.1, 0.4] rad or |x| > [1, 4]; a third of the MDPs do not observe x.
- valley: an energy-pumping valley (Moore 1990's mountain car, generalised): v' = v + p u -
  g h'(x) with the height h(x) = -cos(k x) / k plus a random smaller harmonic, power p log
  [0.0005, 0.003], gravity g log [0.001, 0.005], k [2, 4], |v| <= [0.04, 0.1]; the goal is the
  right hilltop x >= [0.3, 0.55] (the valley floor is at 0, the left wall inelastic at -1.2).
- smooth_map: d in {1, 2, 3}, x' = x + dt (f(x) + B u) + noise with f a random smooth field
  (four random sinusoids per dimension, amplitudes [0.2, 2]), B a random direction, dt log
  [0.02, 0.2]; x in [-1, 1]^d, leaving it a failure (half) or clipped.
Reward shapes, drawn per MDP among those the system allows, all in [0, 1]:
- survival: 1 per step until an absorbing failure (worth 0): balancing;
- goal: 0 per step (the [0, 1] image of "minus one per step") until an absorbing goal region,
  worth 1 per step (MountainCar, Acrobot, a reach);
- dense: 1 - (normalised distance to a target)^q, q [0.5, 2], minus an action cost
  [0, 0.1] x (u / u_max)^2 (Pendulum's shape), clipped to [0, 1].
Noise: process noise std [0, 0.05] of a step's typical motion (half of the MDPs none),
observation noise std [0, 0.03] of each dimension's range (half none).

Discretization, by the rules a robot uses (rlfm_edge.discretize.Discretizer): 2 to 8 bins per
observed dimension, up to 12 where there are only one or two (the same count in every dimension
half of the time), at most ``s_max`` states (at least 16 are allowed, so that four dimensions
get two bins each); edges uniform over the observed range of random-policy rollouts, or their quantiles
(``rlfm-edge calibrate-bins``' rule). The induced tabular MDP: continuous states are gathered
per bin (random-policy rollouts from the start distribution, plus states drawn uniformly in
the range, for the bins a random policy does not reach), up to ``SAMPLES_PER_BIN`` per bin;
each is stepped under every action; P(s'|s, a) and R(s, a) are the frequencies and means over
those samples. A bin with no sample keeps a zero-reward self-loop (a robot never sees it).
Failure and goal are extra absorbing states after the bins, in that order, as the runtime adds
them (rlfm_edge.runtime.online_agent.TERMINAL_KINDS). ``SAMPLES_PER_BIN`` is what makes Q*
stable: the target policy's total-variation distance to a 4096-sample estimate is recorded
in BENCHMARKS.md ("Training: the robot prior family's target stability").

The training examples' statistics, though, are not drawn from that MDP: they come from
episodes of the continuous system seen through the bins (``BinnedSystem``), as a robot's do.
A bin hides where in it the system is, so those counts are not a Markov chain's: what a bin
leads to depends on the policy and the history, and Q* of the induced MDP stays the target.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rlfm_edge.mdp import TabularMDP

SYSTEMS = ("point_mass", "pendulum", "cart_pole", "valley", "smooth_map")
SAMPLES_PER_BIN = 256
ROLLOUT_EPISODES = 64
ROLLOUT_STEPS = 200
UNIFORM_POOL = 4 * ROLLOUT_EPISODES * ROLLOUT_STEPS  # states drawn uniformly, for coverage


@dataclass
class System:
    """A continuous system, vectorised over N states: what the family discretizes.

    ``step(x, u, rng)`` -> next states; ``observe(x)`` -> what the robot's sensors report;
    ``failure(x)`` / ``goal(x)`` -> absorbing regions (None: the system has none);
    ``reward(x, u)`` -> the reward of acting u in x, in [0, 1]; ``start(n, rng)`` -> states an
    episode starts in; ``low`` / ``high`` bound the states drawn uniformly for coverage.
    """

    name: str
    low: np.ndarray
    high: np.ndarray
    controls: np.ndarray
    step: Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray]
    observe: Callable[[np.ndarray], np.ndarray]
    start: Callable[[int, np.random.Generator], np.ndarray]
    reward: Callable[[np.ndarray, np.ndarray], np.ndarray]
    failure: Callable[[np.ndarray], np.ndarray] | None = None
    goal: Callable[[np.ndarray], np.ndarray] | None = None


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _controls(rng: np.random.Generator, n_actions: int, limit: float) -> np.ndarray:
    """n_actions force levels spread over [-limit, limit] (bang-bang for two)."""
    return np.linspace(-limit, limit, n_actions)


def _dense_reward(rng: np.random.Generator, target: np.ndarray, scale: np.ndarray,
                  u_max: float) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    q = rng.uniform(0.5, 2.0)
    cost = rng.uniform(0.0, 0.1) if rng.random() < 0.5 else 0.0

    def reward(x: np.ndarray, u: np.ndarray) -> np.ndarray:
        dist = np.sqrt((((x - target) / scale) ** 2).mean(axis=1)).clip(0.0, 1.0)
        return np.clip(1.0 - dist ** q - cost * (u / u_max) ** 2, 0.0, 1.0)

    return reward


def _constant(value: float) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    return lambda x, u: np.full(len(x), value)


def _noise(rng: np.random.Generator) -> float:
    return rng.uniform(0.0, 0.05) if rng.random() < 0.5 else 0.0


def point_mass(rng: np.random.Generator, n_actions: int) -> System:
    m, c = _log_uniform(rng, 0.5, 5.0), rng.uniform(0.0, 2.0)
    u_max, dt = _log_uniform(rng, 0.5, 5.0), _log_uniform(rng, 0.02, 0.1)
    v_max = u_max / m / max(c, 0.5)
    sigma = _noise(rng) * v_max
    walls_fail = rng.random() < 0.5

    def step(x, u, rng):
        v = x[:, 1] + dt * (u / m - c * x[:, 1]) + sigma * np.sqrt(dt) * rng.standard_normal(len(x))
        pos = x[:, 0] + dt * v
        if not walls_fail:
            hit = np.abs(pos) > 1.0
            pos, v = np.clip(pos, -1.0, 1.0), np.where(hit, 0.0, v)
        return np.stack([pos, v], axis=1)

    target = np.array([rng.uniform(-0.8, 0.8), 0.0])
    shape = rng.choice(["goal", "dense"] + (["survival"] if walls_fail else []))
    goal = None
    if shape == "goal":
        width, v_tol = rng.uniform(0.05, 0.3), rng.uniform(0.2, 1.0) * v_max

        def goal(x):
            return (np.abs(x[:, 0] - target[0]) < width) & (np.abs(x[:, 1]) < v_tol)

    reward = (_dense_reward(rng, target, np.array([2.0, 2 * v_max]), u_max) if shape == "dense"
              else _constant(1.0 if shape == "survival" else 0.0))

    def start(n, rng):
        centre = rng.uniform(-0.8, 0.8)
        return np.stack([np.clip(centre + 0.05 * rng.standard_normal(n), -1, 1),
                         0.05 * v_max * rng.standard_normal(n)], axis=1)

    return System("point_mass", np.array([-1.0, -v_max]), np.array([1.0, v_max]),
                  _controls(rng, n_actions, u_max), step, lambda x: x, start, reward,
                  failure=(lambda x: np.abs(x[:, 0]) > 1.0) if walls_fail else None, goal=goal)


def _wrap(theta: np.ndarray) -> np.ndarray:
    return (theta + np.pi) % (2 * np.pi) - np.pi


def pendulum(rng: np.random.Generator, n_actions: int) -> System:
    g_l, b = rng.uniform(5.0, 20.0), rng.uniform(0.0, 0.5)
    u_max = rng.uniform(0.2, 1.5) * g_l  # torque per m l^2, relative to gravity's m g l
    dt, w_max = _log_uniform(rng, 0.02, 0.1), rng.uniform(4.0, 12.0)
    sigma = _noise(rng) * w_max

    def step(x, u, rng):
        w = x[:, 1] + dt * (g_l * np.sin(x[:, 0]) - b * x[:, 1] + u)
        w = np.clip(w + sigma * np.sqrt(dt) * rng.standard_normal(len(x)), -w_max, w_max)
        return np.stack([_wrap(x[:, 0] + dt * w), w], axis=1)

    shape = rng.choice(["dense", "goal", "survival"])
    failure = goal = None
    if shape == "survival":  # balance from near upright
        limit = rng.uniform(0.2, 1.0)

        def failure(x):
            return np.abs(x[:, 0]) > limit

        def start(n, rng):
            return np.stack([rng.uniform(-0.5, 0.5, n) * limit, rng.uniform(-0.2, 0.2, n)], axis=1)
    else:  # swing up from anywhere
        def start(n, rng):
            return np.stack([rng.uniform(-np.pi, np.pi, n), rng.uniform(-1.0, 1.0, n)], axis=1)

        if shape == "goal":
            tol, w_tol = rng.uniform(0.1, 0.5), rng.uniform(0.5, 2.0)

            def goal(x):
                return (np.abs(x[:, 0]) < tol) & (np.abs(x[:, 1]) < w_tol)

    reward = (_dense_reward(rng, np.zeros(2), np.array([np.pi, w_max]), u_max) if shape == "dense"
              else _constant(1.0 if shape == "survival" else 0.0))
    if rng.random() < 0.5:
        observe = lambda x: x  # noqa: E731
    else:
        def observe(x):
            return np.stack([np.cos(x[:, 0]), np.sin(x[:, 0]), x[:, 1]], axis=1)

    return System("pendulum", np.array([-np.pi, -w_max]), np.array([np.pi, w_max]),
                  _controls(rng, n_actions, u_max), step, observe, start, reward, failure, goal)


def cart_pole(rng: np.random.Generator, n_actions: int) -> System:
    m_cart, m_pole = _log_uniform(rng, 0.3, 3.0), _log_uniform(rng, 0.03, 0.5)
    half, force = rng.uniform(0.2, 1.0), rng.uniform(3.0, 20.0)
    dt, theta_fail, x_fail = rng.uniform(0.01, 0.05), rng.uniform(0.1, 0.4), rng.uniform(1.0, 4.0)
    total, g = m_cart + m_pole, 9.8
    sigma = _noise(rng)

    def step(x, u, rng):
        pos, vel, th, om = x.T
        cos, sin = np.cos(th), np.sin(th)
        temp = (u + m_pole * half * om ** 2 * sin) / total
        alpha = (g * sin - cos * temp) / (half * (4.0 / 3.0 - m_pole * cos ** 2 / total))
        acc = temp - m_pole * half * alpha * cos / total
        om = om + dt * alpha + sigma * np.sqrt(dt) * rng.standard_normal(len(x))
        vel = vel + dt * acc
        return np.stack([pos + dt * vel, vel, th + dt * om, om], axis=1)

    v_scale = force / total * 0.5
    hidden_x = rng.random() < 1 / 3
    observe = (lambda x: x[:, 1:]) if hidden_x else (lambda x: x)

    def start(n, rng):
        return rng.uniform(-0.05, 0.05, (n, 4))

    return System("cart_pole", np.array([-x_fail, -v_scale, -theta_fail, -3 * theta_fail / 0.3]),
                  np.array([x_fail, v_scale, theta_fail, 3 * theta_fail / 0.3]),
                  _controls(rng, n_actions, force), step, observe, start, _constant(1.0),
                  failure=lambda x: (np.abs(x[:, 2]) > theta_fail) | (np.abs(x[:, 0]) > x_fail))


def valley(rng: np.random.Generator, n_actions: int) -> System:
    power, gravity = _log_uniform(rng, 0.0005, 0.003), _log_uniform(rng, 0.001, 0.005)
    k, v_max, x_goal = rng.uniform(2.0, 4.0), rng.uniform(0.04, 0.1), rng.uniform(0.3, 0.55)
    k2, a2, phase = rng.uniform(5.0, 9.0), rng.uniform(0.0, 0.3), rng.uniform(0, 2 * np.pi)
    x_low = -1.2
    sigma = _noise(rng) * v_max

    def slope(pos):  # h'(x) of h(x) = -cos(k x) / k - a2 cos(k2 x + phase) / k2
        return np.sin(k * pos) + a2 * np.sin(k2 * pos + phase)

    def step(x, u, rng):
        v = x[:, 1] + power * u - gravity * slope(x[:, 0]) + sigma * rng.standard_normal(len(x))
        v = np.clip(v, -v_max, v_max)
        pos = x[:, 0] + v
        v = np.where(pos < x_low, np.maximum(v, 0.0), v)
        return np.stack([np.clip(pos, x_low, x_goal + 0.1), v], axis=1)

    def start(n, rng):
        return np.stack([rng.uniform(-0.6, -0.4, n), np.zeros(n)], axis=1)

    shape = rng.choice(["goal", "goal", "dense"])
    reward = (_dense_reward(rng, np.array([x_goal, 0.0]), np.array([x_goal - x_low, 4 * v_max]), 1.0)
              if shape == "dense" else _constant(0.0))
    return System("valley", np.array([x_low, -v_max]), np.array([x_goal, v_max]),
                  _controls(rng, n_actions, 1.0), step, lambda x: x, start, reward,
                  goal=lambda x: x[:, 0] >= x_goal)


def smooth_map(rng: np.random.Generator, n_actions: int) -> System:
    d = int(rng.integers(1, 4))
    dt = _log_uniform(rng, 0.02, 0.2)
    freq = rng.normal(0.0, 2.0, (d, 4, d))
    amp = rng.uniform(0.2, 2.0, (d, 4)) * rng.choice([-1, 1], (d, 4))
    phase = rng.uniform(0, 2 * np.pi, (d, 4))
    direction = rng.standard_normal(d)
    direction /= np.linalg.norm(direction)
    u_max = rng.uniform(0.5, 3.0)
    sigma = _noise(rng)
    leave_fails = rng.random() < 0.5

    def field(x):
        return (amp[None] * np.sin(np.einsum("dkj,nj->ndk", freq, x) + phase[None])).sum(axis=2)

    def step(x, u, rng):
        noise = sigma * np.sqrt(dt) * rng.standard_normal(x.shape)
        nxt = x + dt * (field(x) + u[:, None] * direction) + noise
        return nxt if leave_fails else np.clip(nxt, -1.0, 1.0)

    target = rng.uniform(-0.7, 0.7, d)
    shape = rng.choice(["goal", "dense"] + (["survival"] if leave_fails else []))
    goal = None
    if shape == "goal":
        radius = rng.uniform(0.1, 0.4) * np.sqrt(d)

        def goal(x):
            return np.linalg.norm(x - target, axis=1) < radius

    reward = (_dense_reward(rng, target, np.full(d, 2.0), u_max) if shape == "dense"
              else _constant(1.0 if shape == "survival" else 0.0))

    def start(n, rng):
        return np.clip(rng.uniform(-0.3, 0.3, d) + 0.05 * rng.standard_normal((n, d)), -1, 1)

    return System("smooth_map", -np.ones(d), np.ones(d), _controls(rng, n_actions, u_max), step,
                  lambda x: x, start, reward,
                  failure=(lambda x: np.abs(x).max(axis=1) > 1.0) if leave_fails else None, goal=goal)


BUILDERS: dict[str, Callable[[np.random.Generator, int], System]] = {
    "point_mass": point_mass, "pendulum": pendulum, "cart_pole": cart_pole, "valley": valley,
    "smooth_map": smooth_map,
}


def _absorbed(system: System, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    fail = system.failure(x) if system.failure is not None else np.zeros(len(x), bool)
    goal = system.goal(x) if system.goal is not None else np.zeros(len(x), bool)
    return fail, goal & ~fail


def _random_rollouts(system: System, rng: np.random.Generator) -> np.ndarray:
    """States visited by a uniformly random policy from the start distribution."""
    x = system.start(ROLLOUT_EPISODES, rng)
    seen = []
    for _ in range(ROLLOUT_STEPS):
        seen.append(x)
        u = system.controls[rng.integers(len(system.controls), size=len(x))]
        x = system.step(x, u, rng)
        fail, goal = _absorbed(system, x)
        done = fail | goal
        if done.any():
            x[done] = system.start(int(done.sum()), rng)
    return np.concatenate(seen)


def _edges(rng: np.random.Generator, obs: np.ndarray, bins: list[int]) -> list[np.ndarray]:
    """Interior bin edges per observed dimension: uniform over the observed range or quantiles."""
    quantile = rng.random() < 0.5
    edges = []
    for j, b in enumerate(bins):
        col = obs[:, j]
        if quantile:
            e = np.unique(np.quantile(col, np.linspace(0, 1, b + 1)[1:-1]))
        else:
            lo, hi = np.quantile(col, [0.005, 0.995])
            e = np.linspace(lo, hi, b + 1)[1:-1] if hi > lo else np.array([])
        edges.append(e)
    return edges


def _bins(rng: np.random.Generator, d: int, s_max: int) -> list[int]:
    """Bins per dimension, 2 to 8 (to 12 with one or two dimensions), the same in every
    dimension half the time, product <= s_max."""
    most = 12 if d <= 2 else 8
    if rng.random() < 0.5:
        b = max(2, min(most, int(np.floor(s_max ** (1.0 / d) + 1e-9))))
        b = int(rng.integers(2, b + 1))
        return [b] * d
    bins = list(rng.integers(2, most + 1, size=d))
    while np.prod(bins) > s_max and max(bins) > 2:
        bins[int(np.argmax(bins))] -= 1
    return [int(b) for b in bins]


def _bin_index(obs: np.ndarray, edges: list[np.ndarray]) -> np.ndarray:
    """Mixed-radix state index, the last dimension fastest, as Discretizer.state."""
    index = np.zeros(len(obs), np.int64)
    for j, e in enumerate(edges):
        index = index * (len(e) + 1) + np.searchsorted(e, obs[:, j], side="right")
    return index


def induced_mdp(system: System, edges: list[np.ndarray], obs_noise: np.ndarray, horizon: int,
                rng: np.random.Generator, samples_per_bin: int = SAMPLES_PER_BIN) -> TabularMDP:
    """The tabular MDP that ``edges`` make of ``system`` (see the module docstring)."""
    n_bins = int(np.prod([len(e) + 1 for e in edges]))
    kinds = [k for k, f in (("failure", system.failure), ("goal", system.goal)) if f is not None]
    S, A = n_bins + len(kinds), len(system.controls)

    def observe_bins(x):
        obs = system.observe(x)
        return _bin_index(obs + obs_noise * rng.standard_normal(obs.shape), edges)

    pool = np.concatenate([_random_rollouts(system, rng),
                           rng.uniform(system.low, system.high, (UNIFORM_POOL, len(system.low)))])
    fail, goal = _absorbed(system, pool)
    pool = pool[~(fail | goal)]
    pool_bins = observe_bins(pool)
    order = rng.permutation(len(pool))
    pool, pool_bins = pool[order], pool_bins[order]
    rank = np.zeros(len(pool), np.int64)  # rank of each sample within its bin, in random order
    sort = np.argsort(pool_bins, kind="stable")
    starts = np.searchsorted(pool_bins[sort], pool_bins[sort], side="left")
    rank[sort] = np.arange(len(pool)) - starts
    keep = rank < samples_per_bin
    x, s = pool[keep], pool_bins[keep]

    P = np.zeros((S, A, S))
    R = np.zeros((S, A))
    for a, u in enumerate(system.controls):
        x_next = system.step(x, np.full(len(x), u), rng)
        nxt = observe_bins(x_next)
        fail, goal = _absorbed(system, x_next)
        if "failure" in kinds:
            nxt[fail] = n_bins + kinds.index("failure")
        if "goal" in kinds:
            nxt[goal] = n_bins + kinds.index("goal")
        np.add.at(P[:, a], (s, nxt), 1.0)
        np.add.at(R[:, a], s, system.reward(x, np.full(len(x), u)))
    n = P.sum(axis=2)
    R = np.divide(R, n, out=np.zeros_like(R), where=n > 0)
    empty = n == 0
    P[empty] = 0.0
    idx = np.nonzero(empty)
    P[idx[0], idx[1], idx[0]] = 1.0
    P /= P.sum(axis=2, keepdims=True)
    for i, kind in enumerate(kinds):
        T = n_bins + i
        P[T] = 0.0
        P[T, :, T] = 1.0
        R[T] = 1.0 if kind == "goal" else 0.0

    starts = observe_bins(system.start(1000, rng))
    mu0 = np.bincount(starts, minlength=S).astype(float)
    return TabularMDP(P, R, mu0 / mu0.sum(), horizon, name=f"prior/robot/{system.name}",
                      reward_dist="deterministic",
                      meta={"family": "robot", "system": system.name, "bins": [len(e) + 1 for e in edges],
                            "terminals": kinds})


@dataclass(eq=False)
class BinnedSystem:
    """Episodes of a continuous system seen through its bins, counted in the state and action
    indices of its induced MDP after the prior's shuffles: the statistics a robot would make.

    ``state_of[k]`` is the MDP state of bin (or terminal) k; ``control_of[s, a]`` the index in
    ``system.controls`` of the MDP's action a in state s. Once absorbed, an episode stays in
    its terminal state, worth 1 per step for a goal and 0 for a failure, as in the MDP.
    """

    system: System
    edges: list[np.ndarray]
    obs_noise: np.ndarray
    kinds: list[str]
    state_of: np.ndarray
    control_of: np.ndarray

    def shuffled(self, state_perm: np.ndarray, action_perm: np.ndarray) -> BinnedSystem:
        """The same rollouts in an MDP whose state i is this one's ``state_perm[i]`` and whose
        action a in state s is this one's ``action_perm[s, a]`` (in the old state's numbering)."""
        inverse = np.empty_like(state_perm)
        inverse[state_perm] = np.arange(len(state_perm))
        control = np.take_along_axis(self.control_of, action_perm, axis=1)
        return BinnedSystem(self.system, self.edges, self.obs_noise, self.kinds,
                            inverse[self.state_of], control[state_perm])

    def _states(self, x: np.ndarray, kind: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        obs = self.system.observe(x)
        index = _bin_index(obs + self.obs_noise * rng.standard_normal(obs.shape), self.edges)
        n_bins = int(np.prod([len(e) + 1 for e in self.edges]))
        index[kind >= 0] = n_bins + kind[kind >= 0]
        return self.state_of[index]

    def rollout(self, policy: np.ndarray, episodes: int, rng: np.random.Generator, stats) -> None:
        """Add ``episodes`` episodes of ``policy`` (H, S, A) action probabilities to ``stats``."""
        A = policy.shape[2]
        cdf_pi = np.cumsum(policy, axis=2)
        x = self.system.start(episodes, rng)
        kind = np.full(episodes, -1)  # index into self.kinds once absorbed
        worth = np.array([1.0 if k == "goal" else 0.0 for k in self.kinds] + [0.0])
        s = self._states(x, kind, rng)
        for h in range(policy.shape[0]):
            a = (cdf_pi[h, s] < rng.random((episodes, 1))).sum(axis=1).clip(0, A - 1)
            u = self.system.controls[self.control_of[s, a]]
            live = kind < 0
            r = worth[kind]
            if live.any():
                r[live] = self.system.reward(x[live], u[live])
                x[live] = self.system.step(x[live], u[live], rng)
                fail, goal = _absorbed(self.system, x)
                for i, name in enumerate(self.kinds):
                    kind[live & (fail if name == "failure" else goal)] = i
            s_next = self._states(x, kind, rng)
            stats.update_batch(s, a, r, s_next)
            s = s_next


def sample_robot_mdp(rng: np.random.Generator, s_max: int, n_actions: int, horizon: int,
                     samples_per_bin: int = SAMPLES_PER_BIN) -> TabularMDP:
    """Draw a system, its bins (at most ``s_max`` states with the terminal ones) and its MDP;
    ``meta["binned_system"]`` makes the MDP's statistics (BinnedSystem)."""
    name = SYSTEMS[rng.integers(len(SYSTEMS))]
    system = BUILDERS[name](rng, n_actions)
    obs = system.observe(_random_rollouts(system, rng))
    span = obs.max(axis=0) - obs.min(axis=0)
    obs_noise = (rng.uniform(0.0, 0.03) * span) if rng.random() < 0.5 else np.zeros(obs.shape[1])
    n_terminals = (system.failure is not None) + (system.goal is not None)
    bins = _bins(rng, obs.shape[1], max(16, s_max - n_terminals))
    edges = _edges(rng, obs, bins)
    mdp = induced_mdp(system, edges, obs_noise, horizon, rng, samples_per_bin)
    kinds = list(mdp.meta["terminals"])
    mdp.meta["binned_system"] = BinnedSystem(
        system, edges, obs_noise, kinds, np.arange(mdp.n_states),
        np.broadcast_to(np.arange(n_actions), (mdp.n_states, n_actions)).copy())
    return mdp
