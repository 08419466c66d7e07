"""Every parser of outside input rejects garbage with its own clear error: never another
exception, never a hang, never an allocation the input asks for.

Parsers: serial frames, statistics files, discretizer and robot configs (YAML), model
manifests and weights, ONNX export descriptions, MCAP transition logs. The long-running
version of these checks is benchmarks/fuzz.py.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import resource
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlfm_edge.discretize import Discretizer
from rlfm_edge.logs import TransitionLogger, read_info, read_observations, read_statistics
from rlfm_edge.model.io import ModelFileError, load_model, sha256_file, verify_manifest, write_manifest
from rlfm_edge.runtime import RobotConfig
from rlfm_edge.serial.protocol import (
    Action,
    Error,
    FrameDecoder,
    Heartbeat,
    Observation,
    encode_frame,
)
from rlfm_edge.stats import CountStats, StatsFileError

pytestmark = pytest.mark.timeout(60)
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _mutations(data: bytes):
    """Byte flips, truncations, splices and insertions of a valid file."""
    n = len(data)
    flip = st.tuples(st.integers(0, n - 1), st.integers(1, 255)).map(
        lambda t: data[:t[0]] + bytes([data[t[0]] ^ t[1]]) + data[t[0] + 1:])
    cut = st.integers(0, n - 1).map(lambda i: data[:i])
    splice = st.tuples(st.integers(0, n), st.binary(min_size=1, max_size=16)).map(
        lambda t: data[:t[0]] + t[1] + data[t[0] + len(t[1]):])
    insert = st.tuples(st.integers(0, n), st.binary(min_size=1, max_size=16)).map(
        lambda t: data[:t[0]] + t[1] + data[t[0]:])
    return st.one_of(flip, cut, splice, insert)


# -- serial frames ---------------------------------------------------------------------------------
MESSAGES = st.one_of(
    st.builds(Observation, st.lists(st.floats(width=32), max_size=8).map(tuple),
              st.floats(width=32), st.booleans(), st.booleans(), st.integers(0, 0xFFFF)),
    st.builds(Action, st.integers(0, 0xFFFF), st.integers(-2**31, 2**31 - 1), st.integers(0, 0xFFFF)),
    st.builds(Heartbeat, st.integers(0, 2**32 - 1), st.integers(0, 0xFFFF)),
    st.builds(Error, st.integers(0, 255), st.integers(0, 0xFFFF), st.text(max_size=20)),
)


@FUZZ
@given(chunks=st.lists(st.binary(max_size=700), max_size=12))
def test_frame_decoder_never_raises_on_arbitrary_bytes_and_its_buffer_stays_bounded(chunks):
    dec = FrameDecoder(check_seq=True)
    for chunk in chunks:
        for msg in dec.feed(chunk):
            assert isinstance(msg, (Observation, Action, Heartbeat, Error))
        assert len(dec._buf) <= dec.max_frame


@FUZZ
@given(noise=st.binary(max_size=300), msg=MESSAGES)
def test_a_valid_frame_after_noise_and_a_delimiter_is_decoded(noise, msg):
    dec = FrameDecoder(check_seq=False)
    out = dec.feed(noise + b"\x00" + encode_frame(msg))
    assert len(out) >= 1
    got = out[-1]
    assert type(got) is type(msg) and got.seq == msg.seq


# -- statistics files ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stats_file(tmp_path_factory) -> tuple[Path, CountStats]:
    stats = CountStats(3, 2)
    rng = np.random.default_rng(0)
    for _ in range(40):
        stats.update(int(rng.integers(3)), int(rng.integers(2)), float(rng.random()),
                     int(rng.integers(3)))
    path = tmp_path_factory.mktemp("stats") / "s.npz"
    stats.save(path)
    return path, stats


def _load_or_stats_error(path: Path) -> CountStats | None:
    try:
        return CountStats.load(path)
    except StatsFileError:
        return None


@FUZZ
@given(data=st.binary(max_size=2000))
def test_arbitrary_bytes_are_a_stats_file_error(tmp_path, data):
    path = tmp_path / "junk.npz"
    path.write_bytes(data)
    with pytest.raises(StatsFileError, match="junk.npz"):
        CountStats.load(path)


@FUZZ
@given(data=st.data())
def test_a_mutated_stats_file_loads_unchanged_or_is_a_stats_file_error(tmp_path, stats_file, data):
    good, stats = stats_file
    mutated = data.draw(_mutations(good.read_bytes()))
    path = tmp_path / "m.npz"
    path.write_bytes(mutated)
    loaded = _load_or_stats_error(path)
    assert loaded is None or loaded == stats


def _npz(members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as z:
        for name, payload in members.items():
            z.writestr(name, payload)
    return buf.getvalue()


def _npy_header(shape, descr="<i8") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


@pytest.mark.parametrize("case", ["claims_huge_array", "deflated_bomb", "plain_npy", "raw_member",
                                  "object_dtype", "deep_json_header", "encrypted_member"])
def test_crafted_stats_files_are_refused_before_allocating(tmp_path, stats_file, case):
    good, stats = stats_file
    huge = (1 << 14, 1 << 14, 1 << 14)  # 32 TiB of int64
    if case == "claims_huge_array":
        data = _npz({"meta.npy": _npy_header((4,), "|u1") + b"{}  ",
                     "n_sas.npy": _npy_header(huge) + b"\0" * 64})
    elif case == "deflated_bomb":  # 512 MiB of zeros in about half a megabyte
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z, z.open("n_sas.npy", "w") as f:
            f.write(_npy_header((1 << 26,)))
            for _ in range(512):
                f.write(bytes(1 << 20))
        data = buf.getvalue()
    elif case == "plain_npy":
        buf = io.BytesIO()
        np.save(buf, np.zeros(3))
        data = buf.getvalue()
    elif case == "raw_member":
        data = _npz({"meta": b"{}", "n_sas.npy": b"x"})
    elif case == "object_dtype":
        data = _npz({"meta.npy": _npy_header((1,), "|O") + b"\0" * 8})
    elif case == "encrypted_member":  # the "encrypted" flag bit set, as the fuzzer found
        data = bytearray(good.read_bytes())
        for sig, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
            start = data.find(sig)
            while start >= 0:
                data[start + offset] |= 1
                start = data.find(sig, start + 1)
        data = bytes(data)
    else:
        meta = np.frombuffer(b"[" * 100_000, np.uint8)
        buf = io.BytesIO()
        np.savez(buf, meta=meta, **stats._payload())
        data = buf.getvalue()
    path = tmp_path / f"{case}.npz"
    path.write_bytes(data)
    before = _maxrss_mb()
    with pytest.raises(StatsFileError, match=case):
        CountStats.load(path)
    assert _maxrss_mb() - before < 64


@pytest.mark.parametrize("field, value", [("n_states", 3.0), ("n_states", True), ("n_actions", -2),
                                          ("n_states", "3")])
def test_a_header_with_a_valid_checksum_but_wrong_sizes_is_refused(tmp_path, stats_file, field, value):
    _, stats = stats_file
    payload = stats._payload()
    meta = {"format_version": 1, "n_states": 3, "n_actions": 2, "sha256": CountStats._digest(payload),
            field: value}
    buf = io.BytesIO()
    np.savez(buf, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), **payload)
    path = tmp_path / "h.npz"
    path.write_bytes(buf.getvalue())
    with pytest.raises(StatsFileError):
        CountStats.load(path)


def test_reward_arrays_of_another_shape_or_dtype_are_refused(tmp_path, stats_file):
    _, stats = stats_file
    for bad in ({"reward_sq_sum": np.zeros(1)}, {"reward_sum": np.full((3, 2), np.nan)},
                {"reward_sum": np.zeros((3, 2), np.float32)}):
        payload = {**stats._payload(), **bad}
        meta = {"format_version": 1, "n_states": 3, "n_actions": 2,
                "sha256": CountStats._digest(payload)}
        buf = io.BytesIO()
        np.savez(buf, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), **payload)
        path = tmp_path / "r.npz"
        path.write_bytes(buf.getvalue())
        with pytest.raises(StatsFileError):
            CountStats.load(path)


# -- discretizer and robot configs -----------------------------------------------------------------
YAML_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30),
                         st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8))
YAML_KEYS = st.one_of(st.text(max_size=8), st.booleans(), st.integers(-5, 5), st.none())  # on: -> True
YAML_VALUES = st.recursive(YAML_SCALARS, lambda kids: st.one_of(
    st.lists(kids, max_size=4), st.dictionaries(YAML_KEYS, kids, max_size=4)), max_leaves=20)
DIM_KEYS = st.one_of(st.sampled_from(["name", "low", "high", "bins", "edges", "other"]), YAML_KEYS)
DIMENSION = st.dictionaries(DIM_KEYS, st.one_of(YAML_VALUES, st.integers(-3, 10**13),
                                                st.lists(st.floats(), max_size=5)), max_size=5)
DISC_CONFIG = st.one_of(YAML_VALUES, st.fixed_dictionaries(
    {"dimensions": st.lists(DIMENSION, max_size=3)},
    optional={"version": st.one_of(st.just(1), YAML_SCALARS)}))


@FUZZ
@given(config=DISC_CONFIG)
def test_any_discretizer_config_builds_or_is_a_value_error(config):
    try:
        disc = Discretizer.from_config(config)
    except ValueError:
        return
    assert disc.n_states >= 1 and all(1 <= b <= 1 << 16 for b in disc.bins)


@FUZZ
@given(config=st.dictionaries(st.one_of(st.sampled_from(
    ["discretizer", "n_actions", "horizon", "terminal_state", "mode", "temperature",
     "anneal_visits", "refresh_every", "control_period_s", "safe_action", "seed", "statistics",
     "log"]), YAML_KEYS),
    st.one_of(YAML_VALUES, DISC_CONFIG), max_size=12))
def test_any_robot_config_builds_or_is_a_value_error(config):
    with contextlib.suppress(ValueError):
        RobotConfig.from_dict(config)


@FUZZ
@given(text=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode),
                      YAML_VALUES.map(lambda v: yaml.safe_dump(v).encode())))
def test_any_config_file_is_a_value_error_naming_the_file(tmp_path, text):
    path = tmp_path / "cfg.yaml"
    path.write_bytes(text)
    for load in (Discretizer.load, RobotConfig.load):
        try:
            load(path)
        except ValueError as exc:
            assert "cfg.yaml" in str(exc)


@pytest.mark.parametrize("text", ["[" * 5000, f"dimensions: [{{low: 0, high: 1, edges: [{10**400}]}}]",
                                  "dimensions: [{low: 0, high: 1, bins: 1000000000000}]"],
                         ids=["nested_5000_deep", "edge_beyond_float", "a_trillion_bins"])
def test_deep_huge_and_oversized_configs_are_value_errors(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"c\.yaml"):
        Discretizer.load(path)


@pytest.mark.parametrize("text", ["dimensions:\non: 1\n", "dimensions: [{low: 0, high: 1, bins: 2, 3: x}]",
                                  "discretizer: {}\nyes: 2\n"])
def test_keys_yaml_reads_as_booleans_or_numbers_are_named_unknown_fields(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    for load in (Discretizer.load, RobotConfig.load):
        with pytest.raises(ValueError, match=r"c\.yaml"):
            load(path)


# -- model manifest, weights and ONNX description --------------------------------------------------
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    torch = pytest.importorskip("torch")
    from rlfm_edge.model import ModelConfig
    from rlfm_edge.model.gat import PolicyGAT
    from rlfm_edge.model.io import save_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model")
    save_model(PolicyGAT(ModelConfig(hidden=4, heads=2, layers=1, max_successors=2, max_states=6,
                                     max_actions=2)), path)
    (path / "model.onnx").write_bytes(b"stand-in for an exported model")
    (path / "model.onnx.json").write_text(json.dumps({
        "sha256": sha256_file(path / "model.onnx"), "max_states": 6, "max_actions": 2,
        "max_successors": 2}))
    write_manifest(path)
    return path


@FUZZ
@given(manifest=st.one_of(st.binary(max_size=200), YAML_VALUES.map(lambda v: json.dumps(v).encode()),
                          st.dictionaries(st.text(max_size=12), st.text(max_size=70), max_size=4).map(
                              lambda f: json.dumps({"files": f}).encode())))
def test_any_manifest_is_a_model_file_error_or_verifies(tmp_path, model_dir, manifest):
    d = Path(shutil.copytree(model_dir, tmp_path / "m", dirs_exist_ok=True))
    (d / "manifest.json").write_bytes(manifest)
    with contextlib.suppress(ModelFileError):
        verify_manifest(d)


@pytest.mark.parametrize("name", ["../outside.txt", "/etc/hostname", "sub/file", ".."])
def test_a_manifest_cannot_vouch_for_files_outside_the_model_directory(model_dir, tmp_path, name):
    d = Path(shutil.copytree(model_dir, tmp_path / "m"))
    (tmp_path / "outside.txt").write_text("x")
    (d / "manifest.json").write_text(json.dumps({"files": {name: "0" * 64}}))
    with pytest.raises(ModelFileError, match="plain file names"):
        verify_manifest(d)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_mutated_weights_with_a_consistent_manifest_are_a_model_file_error_or_load(
        tmp_path, model_dir, data):
    d = Path(shutil.copytree(model_dir, tmp_path / "m", dirs_exist_ok=True))
    (d / "weights.npz").write_bytes(data.draw(_mutations((model_dir / "weights.npz").read_bytes())))
    write_manifest(d)
    with contextlib.suppress(ModelFileError):
        load_model(d)


@pytest.mark.parametrize("field, value", [("hidden", 10**6), ("layers", 10**5), ("hidden", "8")])
def test_a_config_asking_for_a_huge_network_is_refused_before_building_it(model_dir, tmp_path,
                                                                            field, value):
    d = Path(shutil.copytree(model_dir, tmp_path / "m"))
    config = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**config, field: value}))
    write_manifest(d)
    with pytest.raises(ModelFileError, match="config.json"):
        load_model(d)


@FUZZ
@given(spec=st.one_of(st.binary(max_size=200), YAML_VALUES.map(lambda v: json.dumps(v).encode())))
def test_any_onnx_export_description_is_a_model_file_error(tmp_path, model_dir, spec):
    from rlfm_edge.inference.onnx_backend import read_spec

    d = Path(shutil.copytree(model_dir, tmp_path / "m", dirs_exist_ok=True))
    (d / "model.onnx.json").write_bytes(spec)
    write_manifest(d)
    with pytest.raises(ModelFileError):
        read_spec(d, "fp32")


# -- MCAP transition logs --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mcap_log(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("log") / "run.mcap"
    with TransitionLogger(path, 4, 2, 10, "dimensions: []") as log:
        for i in range(30):
            log.write(0, i, [0.1 * i, -0.2], i % 4, i % 2, 0.5, (i - 1) % 4 if i else -1,
                      (i - 1) % 2 if i else -1, 1000)
    return path


def _read_all(path: Path) -> None:
    read_info(path)
    read_statistics(path)
    read_observations(path)


@FUZZ
@given(data=st.data())
def test_a_mutated_log_replays_or_is_a_value_error_naming_it(tmp_path, mcap_log, data):
    path = tmp_path / "m.mcap"
    path.write_bytes(data.draw(st.one_of(_mutations(mcap_log.read_bytes()), st.binary(max_size=500))))
    try:
        _read_all(path)
    except ValueError as exc:
        assert "m.mcap" in str(exc)


def test_a_log_asking_for_gigantic_statistics_is_refused_before_allocating(tmp_path):
    path = tmp_path / "big.mcap"
    with TransitionLogger(path, 2**31 - 1, 2**31 - 1, 10) as lg:
        lg.write(0, 0, [0.0], 0, 0, 0.0, -1, -1, 0)  # the file is made by the first step
    before = _maxrss_mb()
    with pytest.raises(ValueError, match="big.mcap: n_states"):
        read_statistics(path)
    assert _maxrss_mb() - before < 64


def test_a_log_cut_short_after_its_chunk_replays_with_a_warning(tmp_path, mcap_log, caplog):
    data = mcap_log.read_bytes()
    path = tmp_path / "cut.mcap"
    for cut in (len(data) // 2, len(data) - 10):  # in the index after the chunk; in the footer
        path.write_bytes(data[:cut])
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="rlfm_edge.logs"):
            assert read_statistics(path) == read_statistics(mcap_log)
        assert "cut.mcap: the log was cut short" in caplog.text


def test_a_log_cut_before_any_complete_chunk_is_a_value_error(tmp_path, mcap_log):
    path = tmp_path / "cut.mcap"
    for cut in (8, 100):  # the magic alone; inside the only chunk
        path.write_bytes(mcap_log.read_bytes()[:cut])
        with pytest.raises(ValueError, match="cut.mcap: (not a readable|no /rlfm/info record)"):
            _read_all(path)


def test_a_file_that_is_not_mcap_or_is_corrupted_is_a_value_error_not_a_cut(tmp_path, mcap_log):
    data = mcap_log.read_bytes()
    chunk_byte = 200  # inside the only chunk (the header record ends at byte 70)
    for content in (b"not an MCAP log\n" * 50,  # no magic
                    data[:9] + b"\xff" * 8 + data[17:],  # the header record's length
                    data[:chunk_byte] + bytes([data[chunk_byte] ^ 0xFF]) + data[chunk_byte + 1:]):
        path = tmp_path / "bad.mcap"
        path.write_bytes(content)
        with pytest.raises(ValueError, match="bad.mcap: not a readable rlfm-edge MCAP log"):
            _read_all(path)
