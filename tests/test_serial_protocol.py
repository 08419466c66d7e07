import itertools
import logging
import os
import struct
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlfm_edge.serial.protocol import (
    MAX_OBS_DIMS,
    Action,
    Error,
    FrameDecoder,
    Heartbeat,
    Observation,
    cobs_decode,
    cobs_encode,
    crc16_ccitt_false,
    encode_frame,
    encode_payload,
)

f32 = st.floats(width=32, allow_nan=False)
seqs = st.integers(0, 0xFFFF)
messages = st.one_of(
    st.builds(Observation, st.lists(f32, max_size=MAX_OBS_DIMS).map(tuple), f32,
              st.booleans(), st.booleans(), seqs),
    st.builds(Action, seqs, st.integers(-(2**31), 2**31 - 1), seqs),
    st.builds(Heartbeat, st.integers(0, 2**32 - 1), seqs),
    st.builds(Error, st.integers(0, 255), seqs, st.text(max_size=40), seqs),
)


def _frame_with(payload: bytes) -> bytes:
    return cobs_encode(payload + struct.pack("<H", crc16_ccitt_false(payload))) + b"\x00"


def test_crc_matches_the_ccitt_false_check_value():
    assert crc16_ccitt_false(b"123456789") == 0x29B1


@given(st.binary(max_size=1200))
def test_cobs_round_trip_leaves_no_zero_byte(data):
    enc = cobs_encode(data)
    assert 0 not in enc
    assert cobs_decode(enc) == data


@settings(max_examples=300)
@given(messages)
def test_every_message_survives_encode_and_decode(msg):
    out = FrameDecoder(check_seq=False).feed(encode_frame(msg))
    assert out == [msg]


@settings(max_examples=100)
@given(st.lists(messages, min_size=1, max_size=10), st.integers(1, 7))
def test_decoder_reassembles_frames_split_at_any_byte(msgs, chunk):
    stream = b"".join(encode_frame(m) for m in msgs)
    dec = FrameDecoder(check_seq=False)
    out = []
    for i in range(0, len(stream), chunk):
        out += dec.feed(stream[i:i + chunk])
    assert out == msgs


@settings(max_examples=300)
@given(st.binary(max_size=2000))
def test_garbage_never_raises_and_the_next_frame_still_decodes(garbage):
    dec = FrameDecoder()
    dec.feed(garbage)
    good = Heartbeat(5, seq=40000)
    # a 0x00 first: the frame must not be glued to a half-read garbage frame
    assert dec.feed(b"\x00" + encode_frame(good)) == [good]


def test_bad_crc_is_dropped_and_counted():
    frame = bytearray(encode_frame(Action(1, 2, seq=3)))
    frame[3] ^= 0x01 if frame[3] != 1 else 0x02
    dec = FrameDecoder()
    assert dec.feed(bytes(frame)) == []
    assert dec.counters.bad_crc + dec.counters.bad_cobs == 1


@pytest.mark.parametrize("payload, counter", [
    (bytes([2, 0x03, 0, 0]) + struct.pack("<I", 1), "bad_version"),
    (bytes([1, 0x7F, 0, 0]), "unknown_type"),
    (bytes([1, 0x03, 0, 0, 1, 2]), "bad_length"),
    (bytes([1, 0x01, 0, 0]) + struct.pack("<H", 3) + b"\x01" * 5, "bad_length"),
    (bytes([1]), "bad_length"),
])
def test_malformed_payloads_are_dropped_into_their_counter(payload, counter):
    dec = FrameDecoder()
    assert dec.feed(_frame_with(payload)) == []
    assert getattr(dec.counters, counter) == 1
    assert dec.counters.dropped == 1 and dec.counters.frames_ok == 0


def test_oversize_run_is_discarded_and_the_buffer_stays_bounded():
    dec = FrameDecoder(max_payload=64)
    assert dec.feed(b"\x05" * 10_000) == []
    assert len(dec._buf) <= dec.max_frame
    assert dec.feed(b"\x05" * 10_000 + b"\x00" + encode_frame(Heartbeat(1, seq=1))) == [
        Heartbeat(1, seq=1)]
    assert dec.counters.oversize == 1


def test_duplicate_and_out_of_order_sequence_numbers_are_dropped():
    dec = FrameDecoder()
    frames = [encode_frame(Heartbeat(0, seq=s)) for s in (10, 11, 11, 9, 12, 0xFFFF)]
    out = dec.feed(b"".join(frames))
    assert [m.seq for m in out] == [10, 11, 12]
    assert dec.counters.duplicates == 1
    assert dec.counters.out_of_order == 2


@pytest.mark.parametrize("flags", [dict(episode_end=True, terminal=True), dict(repeat=True),
                                   dict(episode_end=True, terminal=True, goal=True),
                                   dict(reset=True, repeat=True), dict(episode_end=True)])
def test_observation_flags_survive_the_round_trip(flags):
    obs = Observation((0.5, -2.0), 1.0, seq=3, **flags)
    assert FrameDecoder().feed(encode_frame(obs)) == [obs]


def test_sequence_numbers_wrap_around():
    dec = FrameDecoder()
    out = dec.feed(b"".join(encode_frame(Heartbeat(0, seq=s)) for s in (0xFFFE, 0xFFFF, 0, 1)))
    assert [m.seq for m in out] == [0xFFFE, 0xFFFF, 0, 1]


def test_reset_flag_restarts_the_sequence_check():
    dec = FrameDecoder()
    dec.feed(encode_frame(Heartbeat(0, seq=500)))
    obs = Observation((1.0,), 0.0, reset=True, seq=0)
    assert dec.feed(encode_frame(obs)) == [obs]


def test_the_same_reset_frame_twice_is_a_duplicate_not_a_second_restart():
    dec = FrameDecoder()
    reset = encode_frame(Observation((1.0,), 0.0, reset=True, seq=0))
    out = dec.feed(reset + reset + encode_frame(Observation((2.0,), 1.0, seq=1)))
    assert [m.seq for m in out] == [0, 1] and dec.counters.duplicates == 1
    assert dec.feed(reset) == [Observation((1.0,), 0.0, reset=True, seq=0)]  # a new restart


def test_dropped_frames_are_warned_per_cause_then_at_most_once_per_interval(caplog):
    dec = FrameDecoder(warn_every_s=0.5)
    bad_crc = cobs_encode(encode_payload(Heartbeat(1, seq=1)) + b"\x00\x00") + b"\x00"
    with caplog.at_level(logging.WARNING, logger="rlfm_edge.serial.protocol"):
        dec.feed(bad_crc * 3 + encode_frame(Heartbeat(1, seq=1)) * 2)
        time.sleep(0.6)
        dec.feed(bad_crc)
    assert [r.getMessage().rsplit("(", 1)[1] for r in caplog.records] == [
        "bad_crc: 1 so far)", "duplicates: 1 so far)", "bad_crc: 4 so far)"]
    assert all(r.getMessage().startswith("serial: dropped a frame") for r in caplog.records)


def test_peer_restarting_silently_is_resynchronised_after_a_few_rejections():
    dec = FrameDecoder()
    dec.feed(encode_frame(Heartbeat(0, seq=30000)))
    out = dec.feed(b"".join(encode_frame(Heartbeat(0, seq=s)) for s in range(12)))
    assert [m.seq for m in out] == [8, 9, 10, 11]
    assert dec.counters.out_of_order == 8 and dec.counters.seq_resyncs == 1


def test_too_many_observation_values_cannot_be_encoded():
    with pytest.raises(ValueError, match="at most"):
        encode_payload(Observation((0.0,) * (MAX_OBS_DIMS + 1), 0.0))


C_CHECK = r"""
#include <stdio.h>
#include "rlfm_protocol.h"
static size_t read_frame(uint8_t *f) {
  size_t len = 0;
  int c;
  while (len < RLFM_MAX_FRAME && scanf("%2x", &c) == 1 && c != 0) f[len++] = (uint8_t)c;
  return len;
}
int main(void) {
  uint8_t out[RLFM_MAX_FRAME];
  float obs[2] = {1.0f, 2.5f};
  size_t n = rlfm_encode_observation(7, obs, 2, 0.5f, RLFM_EPISODE_END | RLFM_TERMINAL | RLFM_GOAL,
                                     out);
  for (size_t i = 0; i < n; i++) printf("%02x", out[i]);
  printf("\n");
  n = rlfm_encode_heartbeat(300, 123456, out);
  for (size_t i = 0; i < n; i++) printf("%02x", out[i]);
  printf("\n");
  uint8_t f[RLFM_MAX_FRAME], p[RLFM_MAX_PAYLOAD + 2];
  size_t len = read_frame(f);
  uint16_t ack = 0;
  int32_t a = 0;
  size_t pl = rlfm_unframe(f, len, p);
  int ok = rlfm_parse_action(p, pl, &ack, &a);
  printf("%d %u %d\n", ok, ack, a);
  while ((len = read_frame(f)) > 0) printf("%zu\n", rlfm_unframe(f, len, p));
  return 0;
}
"""


def _overlong_frame() -> bytes:
    """RLFM_MAX_FRAME (518) bytes of `02 x` blocks, which decode to 517 bytes (3 more than the
    C side's payload buffer) with a valid CRC, so only a bound on the output refuses them."""
    for x, y in itertools.product(range(1, 256), repeat=2):
        payload = bytes(v for b in [1, x, y] + [0x41] * 255 for v in (b, 0))[:-1]
        crc = crc16_ccitt_false(payload)
        if crc & 0xFF == 0 and crc >> 8:
            frame = bytes(v for b in payload[::2] + bytes([crc >> 8]) for v in (2, b))
            assert len(frame) == 518 and len(cobs_decode(frame)) == 517
            return frame + b"\x00"
    raise AssertionError("no such frame")


def _sanitizer_flags(cc: str, tmp_path) -> list[str]:
    """-fsanitize=address where this compiler builds and runs it, so an overflow aborts."""
    import subprocess

    flags = ["-fsanitize=address", "-g"]
    probe = subprocess.run([cc, *flags, "-x", "c", "-", "-o", str(tmp_path / "probe")],
                           input="int main(void) { return 0; }", capture_output=True, text=True)
    if probe.returncode != 0 or subprocess.run([str(tmp_path / "probe")]).returncode != 0:
        return []
    return flags


def test_reference_c_header_speaks_the_same_bytes(tmp_path):
    import shutil
    import subprocess
    from pathlib import Path

    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler here")
    (tmp_path / "check.c").write_text(C_CHECK)
    include = Path(__file__).resolve().parents[1] / "examples"
    subprocess.run([cc, "-std=c99", "-Wall", "-Wextra", "-Werror", *_sanitizer_flags(cc, tmp_path),
                    f"-I{include}", "check.c", "-o", "check"], cwd=tmp_path, check=True)
    largest = encode_frame(Error(1, 0, "x" * 600, seq=9))  # a 512-byte payload, the most allowed
    frames = encode_frame(Action(ack_seq=513, action=-2, seq=9)) + largest + _overlong_frame()
    lines = subprocess.run([str(tmp_path / "check")], input=frames.hex(), capture_output=True,
                           text=True, check=True, env={**os.environ, "ASAN_OPTIONS": "detect_leaks=0"}
                           ).stdout.split("\n")
    assert lines[0] == encode_frame(Observation((1.0, 2.5), 0.5, True, False, seq=7,
                                                terminal=True, goal=True)).hex()
    assert lines[1] == encode_frame(Heartbeat(123456, seq=300)).hex()
    assert lines[2] == "1 513 -2"
    assert lines[3:5] == ["512", "0"]  # the largest payload fits; the overlong frame is refused
