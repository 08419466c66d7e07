"""The synthetic-MDP prior: a bag of MDP families, each with its parameters sampled per MDP.

Like TabPFN's prior, nothing here is tuned to a benchmark: each family is a kind of
structure a robot task may have, and its ranges are wide. Every family then gets the
same treatment: action labels permuted per state (so "action 0" means nothing), an
optional set of absorbing states, and a horizon H drawn from [h_min, h_max].

Families (weights in PriorConfig.weights):
- garnet:  Garnet(S, A, b) (Archibald et al. 1995), b ~ U{1..min(S, 6)} successors per
           (s, a), probabilities from sorted uniform cuts; rewards sparse (a fraction
           U[0.05, 0.5] of pairs nonzero, means U[0, 1]) or dense.
- dense:   rows P(s, a, .) ~ Dirichlet(alpha), alpha log-uniform in [0.05, 1]; dense rewards.
- chain:   states on a line; one "forward" action moves right w.p. p_fwd ~ U[0.3, 1]
           (else stays or slips back), the others move left or reset to the start;
           a small reward at the start, a large one at the far end (RiverSwim-like).
- grid:    a w x h grid (w*h <= S), 4 moves (+ stay when A > 4), slip ~ U[0, 0.4] to a
           perpendicular move, a goal (absorbing, reward 1 per step) and optional pits
           (absorbing, reward 0), small step rewards.
- bandit:  one hub state whose actions lead to "arm" states with Bernoulli rewards of
           close means, returning to the hub: tests identifying small gaps.
- lock:    combination lock / DeepSea-like: one correct action per state advances, the
           others reset to the start (or fall into a trap); reward only at the end,
           optional small cost for the correct action.
- survival: stay alive (balancing, not falling): the same reward c ~ U[0.2, 1] every step
           until an absorbing failure state; states on a line, each action drifts by
           -2..2 (plus a spread of 0..2), and fails with a probability that grows towards
           the ends (half of the MDPs) or varies per state, scaled per action by U[0, 2].
           Not in the default weights (so the held-out seeds of the recorded benchmarks keep
           their MDPs); a training config names it.
- layered: time in the state (a finite-horizon decision tree folded into a DAG, as in
           DeepSea): w to w + 2 layers of w positions (about square, so reaching the far
           side takes a right shift at nearly every layer; leftover states absorbing and
           unreachable), starting at position 0; every action moves one layer on, shifting the
           position by its own -1/0/+1 per state (at least one action each way; half of
           the MDPs deterministic, the others slip ~ U[0, 0.3] to a random shift), and the
           last layer falls into an absorbing end. Reward sits at a far cell of the last
           layer (U[0.5, 1], for one action), with optional distractors
           (small rewards elsewhere in the last layers) and a small per-step reward
           U[0, 0.02] for the actions that do not shift right (DeepSea's move cost,
           rescaled). No retrying within an episode: a wrong early turn loses the reward.
           Outside the default weights, like survival.
- reach:   reach a goal once (an episodic task that ends there, as in FrozenLake or a robot
           arm's reach): a slippery grid (60%) or Garnet-like random successors, a goal whose
           arrival pays U[0.5, 1 - step] once and then leads to an absorbing end with no reward, holes
           (a fraction U[0, 0.2] of the cells) that lead to the same end, and sometimes a tiny
           reward U[0, 0.005] per step on the way. Elsewhere in the prior a prize, once
           reached, pays every step. Outside the default weights, like survival.
- lure:    a chain with a lure (NChain, Strens 2000): one "forward" action moves up the
           line (succeeding w.p. U[0.6, 1], else staying) and pays a prize U[0.5, 1] per
           step only at the far end; every other action "cashes out": a small reward (up to
           U[0.05, 0.5] of the prize) and back to the start, paid everywhere (70%) or only
           in the first third of the line, or steps back one state unpaid. With probability
           slip (U[0, 0.3] in 70% of the MDPs) another action than the chosen one is
           executed. Whether the prize is worth the trip depends on H and the line's length.
           Outside the default weights, like survival.
- robot:   a random continuous system (point mass, pendulum, cart-pole, energy-pumping valley,
           random smooth map) discretized by a robot's bin rules, with its absorbing failures
           and goals: the tabular MDP the bins induce (training/robot_prior.py says how).
           Its state count comes from its bins, at most ``robot_s_max``; its horizon is drawn
           from [``robot_h_min``, h_max], as robots plan over tens of steps or more.
           Outside the default weights, like survival.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from rlfm_edge.mdp import TabularMDP
from rlfm_edge.training.robot_prior import sample_robot_mdp


@dataclass(frozen=True)
class PriorConfig:
    s_min: int = 2
    s_max: int = 40
    a_min: int = 2
    a_max: int = 6
    h_min: int = 5
    h_max: int = 60
    absorbing_prob: float = 0.2   # chance an MDP gets extra absorbing states
    robot_s_max: int = 250        # the robot family's states, bins and terminal states together
    robot_h_min: int = 20
    weights: dict[str, float] = field(default_factory=lambda: {
        "garnet": 0.25, "dense": 0.1, "chain": 0.2, "grid": 0.2, "bandit": 0.1, "lock": 0.15,
    })

    def __post_init__(self) -> None:
        if not 2 <= self.s_min <= self.s_max:
            raise ValueError(f"prior: need 2 <= s_min <= s_max, got {self.s_min}, {self.s_max}")
        if not 2 <= self.a_min <= self.a_max:
            raise ValueError(f"prior: need 2 <= a_min <= a_max, got {self.a_min}, {self.a_max}")
        if not 1 <= self.h_min <= self.h_max:
            raise ValueError(f"prior: need 1 <= h_min <= h_max, got {self.h_min}, {self.h_max}")
        if self.robot_s_max < 16 or not 1 <= self.robot_h_min <= (
                self.h_max if "robot" in self.weights else self.robot_h_min):
            raise ValueError(f"prior: need robot_s_max >= 16 and 1 <= robot_h_min <= h_max, got "
                             f"{self.robot_s_max}, {self.robot_h_min}")
        unknown = set(self.weights) - set(FAMILIES) - {"robot"}
        if unknown or not self.weights:
            raise ValueError(f"prior weights: unknown families {sorted(unknown)}; known "
                             f"{sorted([*FAMILIES, 'robot'])}")


def _log_uniform_int(rng: np.random.Generator, lo: int, hi: int) -> int:
    return int(np.floor(np.exp(rng.uniform(np.log(lo), np.log(hi + 1)))))


def _sparse_rewards(rng: np.random.Generator, S: int, A: int) -> np.ndarray:
    if rng.random() < 0.5:
        R = rng.random((S, A)) * (rng.random((S, A)) < rng.uniform(0.05, 0.5))
    else:
        R = rng.random((S, A)) * rng.uniform(0.2, 1.0)
    return R


def garnet(rng: np.random.Generator, S: int, A: int) -> tuple[np.ndarray, np.ndarray]:
    b = int(rng.integers(1, min(S, 6) + 1))
    P = np.zeros((S, A, S))
    for s in range(S):
        for a in range(A):
            succ = rng.choice(S, size=b, replace=False)
            cuts = np.sort(rng.random(b - 1))
            P[s, a, succ] = np.diff(np.concatenate([[0.0], cuts, [1.0]]))
    return P, _sparse_rewards(rng, S, A)


def dense(rng: np.random.Generator, S: int, A: int) -> tuple[np.ndarray, np.ndarray]:
    alpha = np.exp(rng.uniform(np.log(0.05), 0.0))
    P = rng.dirichlet(np.full(S, alpha), size=(S, A))
    return P, rng.random((S, A)) * rng.uniform(0.2, 1.0)


def chain(rng: np.random.Generator, S: int, A: int) -> tuple[np.ndarray, np.ndarray]:
    p_fwd = rng.uniform(0.3, 1.0)
    p_back = rng.uniform(0.0, min(0.3, 1.0 - p_fwd))
    reset_others = rng.random() < 0.5
    P = np.zeros((S, A, S))
    R = np.zeros((S, A))
    for s in range(S):
        fwd, back = min(s + 1, S - 1), max(s - 1, 0)
        P[s, 0, fwd] += p_fwd
        P[s, 0, back] += p_back
        P[s, 0, s] += 1.0 - p_fwd - p_back
        for a in range(1, A):
            P[s, a, 0 if reset_others else back] = 1.0
    R[0, 1:] = rng.uniform(0.0, 0.1)               # the tempting small reward at the start
    R[S - 1, 0] = rng.uniform(0.5, 1.0)            # the real prize at the far end
    return P, R


GRID_MOVES = ((0, 1), (1, 0), (0, -1), (-1, 0))


def _grid_target(s: int, move: tuple[int, int], w: int, h: int) -> int:
    """Cell s of a w x h grid (s = x * h + y) after ``move``; a move off the grid stays."""
    x, y = divmod(s, h)
    x2, y2 = x + move[0], y + move[1]
    return x2 * h + y2 if 0 <= x2 < w and 0 <= y2 < h else s


def grid(rng: np.random.Generator, S: int, A: int) -> tuple[np.ndarray, np.ndarray]:
    w = int(rng.integers(1, int(np.sqrt(S)) + 1))
    h = S // w
    n = w * h
    slip = rng.uniform(0.0, 0.4)
    moves = [*GRID_MOVES, (0, 0)]
    P = np.zeros((S, A, S))
    R = np.zeros((S, A))
    goal = int(rng.integers(n))
    pits = set(rng.choice(n, size=int(rng.integers(0, max(1, n // 6) + 1)), replace=False).tolist())
    pits.discard(goal)

    step_reward = rng.uniform(0.0, 0.05) if rng.random() < 0.3 else 0.0
    for s in range(S):
        if s >= n or s == goal or s in pits:  # unused cells and ends: absorbing
            P[s, :, s] = 1.0
            R[s, :] = 1.0 if s == goal else 0.0
            continue
        for a in range(A):
            m = moves[a % len(moves)]
            P[s, a, _grid_target(s, m, w, h)] += 1.0 - slip
            perp = [moves[(a + 1) % 4], moves[(a + 3) % 4]] if a % 5 < 4 else [m, m]
            for p in perp:
                P[s, a, _grid_target(s, p, w, h)] += slip / 2
            R[s, a] = step_reward
    return P, R


def bandit(rng: np.random.Generator, S: int, A: int) -> tuple[np.ndarray, np.ndarray]:
    P = np.zeros((S, A, S))
    R = np.zeros((S, A))
    arms = rng.integers(1, S, size=A) if S > 1 else np.zeros(A, dtype=int)
    base, gap = rng.uniform(0.1, 0.8), rng.uniform(0.02, 0.3)
    means = np.clip(base + gap * rng.standard_normal(S), 0.0, 1.0)
    for a in range(A):
        P[0, a, arms[a]] = 1.0
    for s in range(1, S):
        P[s, :, 0] = 1.0
        R[s, :] = means[s]
    return P, R


def lock(rng: np.random.Generator, S: int, A: int) -> tuple[np.ndarray, np.ndarray]:
    trap = rng.random() < 0.3 and S > 2
    n = S - 1 if trap else S
    P = np.zeros((S, A, S))
    R = np.zeros((S, A))
    cost = rng.uniform(0.0, 0.02) if rng.random() < 0.5 else 0.0
    for s in range(n):
        P[s, :, S - 1 if trap else 0] = 1.0
        P[s, 0, :] = 0.0
        P[s, 0, min(s + 1, n - 1)] = 1.0
        R[s, 1:] = cost
    R[n - 1, 0] = 1.0
    if trap:
        P[S - 1, :, S - 1] = 1.0
    return P, R


def survival(rng: np.random.Generator, S: int, A: int) -> tuple[np.ndarray, np.ndarray]:
    n = S - 1  # states on a line, then the absorbing failure state
    line = np.arange(n)
    edge = np.abs(line - (n - 1) / 2) / max((n - 1) / 2, 1)  # 0 at the centre, 1 at the ends
    if rng.random() < 0.5:  # balance: failing is likelier towards the ends
        danger = rng.uniform(0.05, 0.5) * edge ** rng.uniform(1.0, 4.0)
    else:
        danger = rng.uniform(0.05, 0.5) * rng.random(n)
    drift = rng.integers(-2, 3, size=A)
    spread = int(rng.integers(0, 3))
    P = np.zeros((S, A, S))
    for x in range(n):
        for a in range(A):
            fail = min(1.0, danger[x] * rng.uniform(0.0, 2.0))
            targets = np.clip(x + drift[a] + np.arange(-spread, spread + 1), 0, n - 1)
            np.add.at(P[x, a], targets, (1.0 - fail) * rng.dirichlet(np.ones(targets.size)))
            P[x, a, n] = fail
    P[n, :, n] = 1.0
    R = np.zeros((S, A))
    R[:n] = rng.uniform(0.2, 1.0)
    relabel = np.append(np.argsort(edge, kind="stable"), n)  # state 0 (the usual start): the centre
    return P[relabel][:, :, relabel], R[relabel]


def layered(rng: np.random.Generator, S: int, A: int) -> tuple[np.ndarray, np.ndarray]:
    end = S - 1  # the absorbing end after the last layer; also any leftover states
    w = int(rng.integers(2, max(2, int(np.sqrt(end))) + 1)) if end >= 4 else 1
    n_layers = max(1, min(end // w, w + int(rng.integers(0, 3))))  # about square: deep
    slip = rng.uniform(0.0, 0.3) if rng.random() < 0.5 else 0.0
    P = np.zeros((S, A, S))
    R = np.zeros((S, A))
    P[n_layers * w:, :, end] = 1.0  # leftover states and the end: absorbing, no reward
    shift = rng.integers(-1, 2, size=(n_layers, w, A))
    if A >= 2:  # every cell can go both ways, as in DeepSea: one action right, one left
        pair = np.argsort(rng.random((n_layers, w, A)), axis=2)[..., :2]
        np.put_along_axis(shift, pair, np.array([1, -1]), axis=2)
    cost_free = rng.uniform(0.0, 0.02) if rng.random() < 0.5 else 0.0
    for layer in range(n_layers):
        for x in range(w):
            s = layer * w + x
            for a in range(A):
                for d, p in ((shift[layer, x, a], 1.0 - slip), *((d, slip / 3) for d in (-1, 0, 1))):
                    nxt = end if layer == n_layers - 1 else (layer + 1) * w + int(np.clip(x + d, 0, w - 1))
                    P[s, a, nxt] += p
                R[s, a] = cost_free if shift[layer, x, a] <= 0 else 0.0
    last = range(max(0, n_layers - 2) * w, n_layers * w)  # the last one or two layers
    treasure = last[-1] - int(rng.integers(0, max(1, w // 4)))  # a far cell of the last layer
    R[treasure, int(rng.integers(A))] = rng.uniform(0.5, 1.0)
    if rng.random() < 0.5:  # distractors: smaller rewards elsewhere near the end
        for s in rng.choice(list(last), size=int(rng.integers(1, 3)), replace=True):
            if s != treasure:
                R[s, int(rng.integers(A))] = rng.uniform(0.0, 0.3)
    return P, R


def reach(rng: np.random.Generator, S: int, A: int) -> tuple[np.ndarray, np.ndarray]:
    end = S - 1  # the absorbing end: after the goal, or after falling into a hole
    n = max(end, 1)
    P = np.zeros((S, A, S))
    if rng.random() < 0.6 and n >= 2:  # a slippery grid of n cells
        w = int(rng.integers(1, int(np.sqrt(n)) + 1))
        h = n // w
        slip = rng.uniform(0.0, 0.5)
        for s in range(n):
            for a in range(A):
                for k, p in ((a % 4, 1.0 - slip), ((a + 1) % 4, slip / 2), ((a + 3) % 4, slip / 2)):
                    P[s, a, _grid_target(s, GRID_MOVES[k], w, h)] += p
    else:  # Garnet-like: a few random successors per (s, a)
        b = int(rng.integers(1, min(n, 4) + 1))
        for s in range(n):
            for a in range(A):
                P[s, a, rng.choice(n, size=b, replace=False)] = rng.dirichlet(np.ones(b))
    goal = int(rng.integers(1, n)) if n > 1 else 0
    cells = np.setdiff1d(np.arange(1, n), [goal])
    holes = rng.choice(cells, size=int(rng.uniform(0.0, 0.2) * cells.size), replace=False)
    R = np.zeros((S, A))
    step = rng.uniform(0.0, 0.005) if rng.random() < 0.3 else 0.0
    R[:n] = step + rng.uniform(0.5, 1.0 - step) * P[:n, :, goal]  # the prize, paid on arrival
    for s in (goal, *holes.tolist(), end):
        P[s] = 0.0
        P[s, :, end] = 1.0
        R[s] = 0.0
    return P, R


def lure(rng: np.random.Generator, S: int, A: int) -> tuple[np.ndarray, np.ndarray]:
    prize = rng.uniform(0.5, 1.0)
    lure_max = prize * rng.uniform(0.05, 0.5)
    p_fwd = rng.uniform(0.6, 1.0)
    slip = rng.uniform(0.0, 0.3) if rng.random() < 0.7 else 0.0
    paid = S if rng.random() < 0.7 else max(1, S // 3)  # the lure pays in states [0, paid)
    cash = np.ones(A, bool)
    cash[0] = False  # action 0 goes forward, action 1 always cashes out
    cash[2:] = rng.random(A - 2) < 0.5
    # What each action does when it is the one executed.
    P_exec = np.zeros((S, A, S))
    R_exec = np.zeros((S, A))
    for s in range(S):
        P_exec[s, 0, min(s + 1, S - 1)] += p_fwd
        P_exec[s, 0, s] += 1.0 - p_fwd
        for a in range(1, A):
            P_exec[s, a, 0 if cash[a] else max(s - 1, 0)] = 1.0
            if cash[a] and s < paid:
                R_exec[s, a] = lure_max * rng.uniform(0.3, 1.0)
    R_exec[S - 1, 0] = prize
    # Chosen -> executed: the chosen action w.p. 1 - slip, else one of the others uniformly.
    executed = np.full((A, A), slip / (A - 1))
    np.fill_diagonal(executed, 1.0 - slip)
    P = np.einsum("ab,sbt->sat", executed, P_exec)
    R = R_exec @ executed.T
    return P, R


FAMILIES: dict[str, Callable[[np.random.Generator, int, int], tuple[np.ndarray, np.ndarray]]] = {
    "garnet": garnet, "dense": dense, "chain": chain, "grid": grid, "bandit": bandit, "lock": lock,
    "survival": survival, "layered": layered, "reach": reach, "lure": lure,
}


def _permute_actions(rng: np.random.Generator, P: np.ndarray, R: np.ndarray):
    """P and R with each state's actions shuffled, and the shuffle (new action a of state s
    is the old action perm[s, a])."""
    S, A, _ = P.shape
    perm = np.argsort(rng.random((S, A)), axis=1)
    return np.take_along_axis(P, perm[:, :, None], axis=1), np.take_along_axis(R, perm, axis=1), perm


def _add_absorbing(rng: np.random.Generator, P: np.ndarray, R: np.ndarray) -> None:
    S = P.shape[0]
    k = int(rng.integers(1, max(1, S // 8) + 1))
    for s in rng.choice(np.arange(1, S), size=min(k, S - 1), replace=False):
        P[s] = 0.0
        P[s, :, s] = 1.0
        R[s] = 0.0 if rng.random() < 0.7 else rng.random()


def sample_mdp(rng: np.random.Generator, config: PriorConfig = PriorConfig()) -> TabularMDP:
    """Draw one MDP: family, then sizes, then the MDP itself."""
    names = list(config.weights)
    w = np.array([config.weights[n] for n in names], dtype=float)
    family = names[rng.choice(len(names), p=w / w.sum())]
    if family == "robot":
        A = int(rng.integers(config.a_min, config.a_max + 1))
        H = _log_uniform_int(rng, config.robot_h_min, config.h_max)
        mdp = sample_robot_mdp(rng, config.robot_s_max, A, H)
        P, R, actions = _permute_actions(rng, mdp.P, mdp.R)
        perm = rng.permutation(mdp.n_states)
        meta = {**mdp.meta, "binned_system": mdp.meta["binned_system"].shuffled(perm, actions)}
        return TabularMDP(P[perm][:, :, perm], R[perm], mdp.mu0[perm], H, name=mdp.name,
                          reward_dist=mdp.reward_dist, meta=meta)
    S = _log_uniform_int(rng, config.s_min, config.s_max)
    A = int(rng.integers(config.a_min, config.a_max + 1))
    H = _log_uniform_int(rng, config.h_min, config.h_max)
    P, R = FAMILIES[family](rng, S, A)
    P, R, _ = _permute_actions(rng, P, R)
    if S > 2 and family not in ("bandit",) and rng.random() < config.absorbing_prob:
        _add_absorbing(rng, P, R)
    mu0 = np.zeros(S)
    mu0[0] = 1.0
    if rng.random() < 0.2:
        mu0 = rng.dirichlet(np.ones(S))
    perm = rng.permutation(S)  # state labels carry no meaning either
    P = P[perm][:, :, perm]
    return TabularMDP(P, R[perm], mu0[perm], H, name=f"prior/{family}",
                      meta={"family": family})
