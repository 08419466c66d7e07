import logging

import numpy as np
import pytest
from mcap.reader import make_reader

from rlfm_edge.logs import (
    TransitionLogger,
    read_info,
    read_observations,
    read_statistics,
    read_steps,
)
from rlfm_edge.stats import CountStats


def _write_run(path, n_steps=300, seed=0):
    rng = np.random.default_rng(seed)
    live = CountStats(6, 3)
    with TransitionLogger(path, 6, 3, horizon=20, discretizer_yaml="dimensions: []") as lg:
        prev = None
        for t in range(n_steps):
            s, a, r = int(rng.integers(6)), int(rng.integers(3)), float(rng.random())
            if t % 20 == 0:
                prev = None  # episode start: no transition
            if prev is not None:
                live.update(prev[0], prev[1], np.float32(r), s)
            p_s, p_a = prev if prev is not None else (-1, -1)
            lg.write(t // 20, t, rng.normal(size=2), s, a, r, p_s, p_a, 1500)
            prev = (s, a)
    return live


def test_replaying_a_log_rebuilds_the_live_statistics(tmp_path):
    live = _write_run(tmp_path / "run.mcap")
    replayed = read_statistics(tmp_path / "run.mcap")
    assert replayed == live
    assert replayed.n_transitions == 300 - 15


def test_log_is_a_ros2_profile_mcap_with_cdr_messages_and_its_schemas(tmp_path):
    _write_run(tmp_path / "run.mcap", n_steps=5)
    with open(tmp_path / "run.mcap", "rb") as f:
        reader = make_reader(f)
        header = reader.get_header()
        summary = reader.get_summary()
    assert header.profile == "ros2"
    assert {c.message_encoding for c in summary.channels.values()} == {"cdr"}
    schemas = {s.name: s for s in summary.schemas.values()}
    assert schemas["rlfm_edge_msgs/msg/Step"].encoding == "ros2msg"
    assert b"MSG: builtin_interfaces/Time" in schemas["rlfm_edge_msgs/msg/Step"].data


def test_info_steps_and_observations_read_back(tmp_path):
    _write_run(tmp_path / "run.mcap", n_steps=40)
    info = read_info(tmp_path / "run.mcap")
    assert (info["n_states"], info["n_actions"], info["horizon"]) == (6, 3, 20)
    steps = list(read_steps(tmp_path / "run.mcap"))
    assert [r.step for r in steps] == list(range(40))
    assert steps[0].prev_state == -1 and steps[1].prev_state == steps[0].state
    assert read_observations(tmp_path / "run.mcap").shape == (40, 2)


def test_unreadable_log_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        read_statistics(tmp_path / "missing.mcap")
    (tmp_path / "junk.mcap").write_bytes(b"not an mcap file at all")
    with pytest.raises(ValueError, match="junk.mcap: not a readable"):
        read_statistics(tmp_path / "junk.mcap")


def test_a_log_whose_writer_died_replays_the_steps_of_its_complete_chunks(tmp_path, caplog):
    """kill -9 leaves no index or footer and a half-written last chunk; replay keeps the rest."""
    path, killed = tmp_path / "run.mcap", tmp_path / "killed.mcap"
    _write_run(path, n_steps=15_000)  # more than one 1 MiB chunk
    with open(path, "rb") as f:
        chunks = make_reader(f).get_summary().chunk_indexes
    assert len(chunks) >= 3  # the LogInfo's, then 1 MiB of steps, then the rest
    last = chunks[-1]
    killed.write_bytes(path.read_bytes()[:last.chunk_start_offset + last.chunk_length // 2])
    with caplog.at_level(logging.WARNING, logger="rlfm_edge.logs"):
        steps = list(read_steps(killed))
    assert "killed.mcap: the log was cut short" in caplog.text
    complete = [r for r in read_steps(path) if r.stamp_ns <= chunks[-2].message_end_time]
    assert [r.step for r in steps] == [r.step for r in complete] and len(steps) > 1000
    expected = CountStats(6, 3)
    for r in complete:
        if r.prev_state >= 0:
            expected.update(r.prev_state, r.prev_action, np.float32(r.reward), r.state)
    assert read_statistics(killed) == expected
