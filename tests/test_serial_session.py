"""The serial-session rules (rlfm_edge.serial.session) that `serve` and the ROS serial bridge share."""

from __future__ import annotations

import pytest

from rlfm_edge.discretize import Discretizer
from rlfm_edge.inference.planning_engine import PlanningEngine
from rlfm_edge.runtime import OnlineAgent, SerialAgentLoop
from rlfm_edge.serial.protocol import Action, Error, Observation
from rlfm_edge.serial.session import NO_ACTION, SerialSession, invalid_observation


def _obs(seq, x=0.1, reward=0.5, **flags):
    return Observation((x,), reward, seq=seq, **flags)


def test_an_episode_runs_from_a_first_observation_without_reward_to_its_end():
    session = SerialSession()
    first = session.turn(_obs(0, reward=9.0, reset=True))
    assert first.reward is None and not first.cut and first.end is None  # its reward is ignored
    session.answered(first, 1)
    step = session.turn(_obs(1, reward=0.5))
    assert step.reward == 0.5 and step.end is None
    session.answered(step, 0)
    end = session.turn(_obs(2, reward=0.25, episode_end=True))
    assert end.end == "truncated" and end.reward == 0.25 and end.kind is None
    session.answered(end, NO_ACTION)
    [record] = session.episodes
    assert (record.ret, record.steps, record.terminated, record.cut) == (0.75, 2, False, False)
    assert session.turn(_obs(3, reward=5.0)).reward is None  # the next episode's first


@pytest.mark.parametrize("goal, kind", [(False, None), (True, "goal")])
def test_terminal_ends_carry_their_kind(goal, kind):
    session = SerialSession()
    session.answered(session.turn(_obs(0)), 0)
    turn = session.turn(_obs(1, reward=1.0, episode_end=True, terminal=True, goal=goal))
    assert (turn.end, turn.kind, turn.reward) == ("terminal", kind, 1.0)
    session.answered(turn, NO_ACTION)
    assert session.episodes[0].terminated


def test_a_repeat_of_the_last_answer_gets_it_again_and_a_reset_cuts_the_episode():
    session = SerialSession()
    session.answered(session.turn(_obs(0)), 0)
    turn = session.turn(_obs(1, x=0.7))
    session.answered(turn, 1)
    again = session.turn(_obs(2, x=0.7, repeat=True))
    assert again.repeat_action == 1
    session.answered(again, 1)  # changes nothing
    assert session.turn(_obs(3, x=0.2, repeat=True)).repeat_action is None  # other content: new
    cut = session.turn(_obs(4, x=0.3, reset=True))
    assert cut.cut and cut.reward is None
    assert [(e.steps, e.cut) for e in session.episodes] == [(1, True)]


def test_a_repeat_of_an_observation_still_being_answered_is_awaited_and_one_refused_is_new():
    session = SerialSession()
    turn = session.turn(_obs(0, x=0.4))
    assert session.turn(_obs(1, x=0.4, repeat=True)).awaited  # the bridge waits for the node
    session.refused(turn)
    again = session.turn(_obs(2, x=0.4, repeat=True))
    assert not again.awaited and again.repeat_action is None


def test_invalid_observations_are_named():
    assert invalid_observation((0.1, float("nan")), 2) == "observation: expected 2 finite values"
    assert invalid_observation((0.1,), 2) is not None and invalid_observation((0.1, 0.2), 2) is None


class _Link:
    def __init__(self) -> None:
        self.sent = []

    def send(self, msg) -> bool:
        self.sent.append(msg)
        return True


def test_serve_enters_the_goal_or_failure_state_the_frame_names():
    agent = OnlineAgent(Discretizer.uniform([0.0], [1.0], 4), PlanningEngine(), horizon=5,
                        n_actions=2, terminal_state="both")
    link = _Link()
    loop = SerialAgentLoop(link, agent)
    for seq, frame in enumerate([_obs(0, reset=True), _obs(0, x=0.6, reward=0.5, episode_end=True,
                                                            terminal=True, goal=True),
                                 _obs(0), _obs(0, x=0.9, reward=0.5, episode_end=True, terminal=True)]):
        loop.handle(Observation(frame.observation, frame.reward, frame.episode_end, frame.reset, seq,
                                frame.terminal, frame.repeat, frame.goal))
    stats = agent.stats
    agent.close(save=False)
    failure, goal = agent.terminal_indices["failure"], agent.terminal_indices["goal"]
    assert stats.n_sas[:4, :, goal].sum() == 1 and stats.n_sas[:4, :, failure].sum() == 1
    assert stats.reward_sum[goal].tolist() == [1.0, 1.0] and stats.reward_sum[failure].tolist() == [0, 0]
    assert [m.action for m in link.sent if isinstance(m, Action)][1::2] == [NO_ACTION, NO_ACTION]
    assert not any(isinstance(m, Error) for m in link.sent)


def test_serve_treats_a_terminal_kind_the_agent_lacks_as_a_time_limit(caplog):
    agent = OnlineAgent(Discretizer.uniform([0.0], [1.0], 4), PlanningEngine(), horizon=5,
                        n_actions=2, terminal_state="failure")
    loop = SerialAgentLoop(_Link(), agent)
    loop.handle(Observation((0.1,), 0.0, seq=0, reset=True))
    loop.handle(Observation((0.6,), 1.0, episode_end=True, terminal=True, goal=True, seq=1))
    stats = agent.stats
    agent.close(save=False)
    assert stats.n_transitions == 1 and stats.n_sas[:, :, 4].sum() == 0  # an ordinary last step
    assert "goal terminal states but the agent has none" in caplog.text
