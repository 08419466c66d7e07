"""The byte protocol between the host agent and a microcontroller robot.

Frame on the wire: ``COBS(payload + crc16(payload)) + 0x00``. The payload is
``version:u8, type:u8, seq:u16, body``; all integers and floats are little-endian, the CRC
(CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no final xor) too. COBS
removes every 0x00 from the frame so 0x00 marks frame ends, and a receiver that starts
mid-stream or sees garbage resynchronises at the next 0x00. The layout is documented for
firmware authors in docs/serial-protocol.md and examples/rlfm_protocol.h.

Bodies:
  OBSERVATION (robot -> host): n:u16, obs:f32[n], reward:f32, flags:u8
      flags bit 0 EPISODE_END: this observation ends the episode (its reward is the last one)
      flags bit 1 RESET: the first observation of an episode after a robot reset; the reward
      is ignored and the sequence check restarts at this frame's seq
      flags bit 2 TERMINAL (with EPISODE_END): the episode ended in an absorbing state
      (failure or goal); the host counts the last transition as entering its terminal state
      flags bit 3 REPEAT: the robot got no ACTION for its previous OBSERVATION and sends it
      again, unchanged but for seq; the host answers it without counting it twice
  ACTION (host -> robot): ack_seq:u16 (the OBSERVATION answered), action:i32
  HEARTBEAT (both ways): uptime_ms:u32 of the sender
  ERROR (both ways): code:u8, ref_seq:u16, text:utf-8 (rest of the body)
"""

from __future__ import annotations

import logging
import struct
import time
from dataclasses import dataclass, field

PROTOCOL_VERSION = 1
MAX_PAYLOAD = 512  # bytes before CRC; bounds the decoder's buffer
MAX_OBS_DIMS = (MAX_PAYLOAD - 4 - 2 - 4 - 1) // 4
HEADER = struct.Struct("<BBH")
CRC_SIZE = 2

MSG_OBSERVATION = 0x01
MSG_ACTION = 0x02
MSG_HEARTBEAT = 0x03
MSG_ERROR = 0x04

FLAG_EPISODE_END = 0x01
FLAG_RESET = 0x02
FLAG_TERMINAL = 0x04
FLAG_REPEAT = 0x08

ERR_BAD_FRAME = 1  # the receiver dropped a frame (CRC, version, type, length)
ERR_INVALID_OBSERVATION = 2  # NaN/inf or wrong length: no ACTION will answer it
ERR_INTERNAL = 3

WARN_EVERY_S = 10.0  # a recurring kind of bad input is logged at most this often

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Observation:
    observation: tuple[float, ...]
    reward: float
    episode_end: bool = False
    reset: bool = False
    seq: int = 0
    terminal: bool = False
    repeat: bool = False


@dataclass(frozen=True)
class Action:
    ack_seq: int
    action: int
    seq: int = 0


@dataclass(frozen=True)
class Heartbeat:
    uptime_ms: int
    seq: int = 0


@dataclass(frozen=True)
class Error:
    code: int
    ref_seq: int
    text: str = ""
    seq: int = 0


Message = Observation | Action | Heartbeat | Error


# -- CRC and COBS ------------------------------------------------------------------------------
def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return table


_CRC_TABLE = _crc_table()


def crc16_ccitt_false(data: bytes) -> int:
    """CRC-16/CCITT-FALSE; crc16_ccitt_false(b"123456789") == 0x29B1."""
    crc = 0xFFFF
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC_TABLE[(crc >> 8) ^ b]
    return crc


def cobs_encode(data: bytes) -> bytes:
    """Consistent Overhead Byte Stuffing: the output holds no 0x00 byte."""
    out = bytearray()
    block = bytearray()
    for b in data:
        if b == 0:
            out.append(len(block) + 1)
            out += block
            block.clear()
        else:
            block.append(b)
            if len(block) == 254:
                out.append(255)
                out += block
                block.clear()
    out.append(len(block) + 1)
    out += block
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    """Inverse of cobs_encode; ValueError on a malformed block."""
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        code = data[i]
        if code == 0:
            raise ValueError("COBS: zero byte inside a frame")
        end = i + code
        if end > n:
            raise ValueError("COBS: block runs past the end of the frame")
        block = data[i + 1:end]
        if 0 in block:
            raise ValueError("COBS: zero byte inside a frame")
        out += block
        i = end
        if code != 255 and i < n:
            out.append(0)
    return bytes(out)


# -- messages <-> payloads ---------------------------------------------------------------------
def encode_body(msg: Message) -> tuple[int, bytes]:
    if isinstance(msg, Observation):
        n = len(msg.observation)
        if n > MAX_OBS_DIMS:
            raise ValueError(f"observation: at most {MAX_OBS_DIMS} values fit a frame, got {n}")
        flags = ((FLAG_EPISODE_END if msg.episode_end else 0) | (FLAG_RESET if msg.reset else 0)
                 | (FLAG_TERMINAL if msg.terminal else 0) | (FLAG_REPEAT if msg.repeat else 0))
        return MSG_OBSERVATION, struct.pack(f"<H{n}ffB", n, *msg.observation, msg.reward, flags)
    if isinstance(msg, Action):
        return MSG_ACTION, struct.pack("<Hi", msg.ack_seq, msg.action)
    if isinstance(msg, Heartbeat):
        return MSG_HEARTBEAT, struct.pack("<I", msg.uptime_ms & 0xFFFFFFFF)
    if isinstance(msg, Error):
        text = msg.text.encode("utf-8")[: MAX_PAYLOAD - HEADER.size - 3]
        return MSG_ERROR, struct.pack("<BH", msg.code, msg.ref_seq) + text
    raise TypeError(f"encode: expected a protocol message, got {type(msg).__name__}")


def encode_payload(msg: Message) -> bytes:
    msg_type, body = encode_body(msg)
    return HEADER.pack(PROTOCOL_VERSION, msg_type, msg.seq & 0xFFFF) + body


def encode_frame(msg: Message) -> bytes:
    """The bytes to write to the wire for one message (delimiter included)."""
    payload = encode_payload(msg)
    return cobs_encode(payload + struct.pack("<H", crc16_ccitt_false(payload))) + b"\x00"


class FrameError(ValueError):
    """A frame that is not a valid message; ``reason`` names the decoder counter it feeds."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def decode_payload(payload: bytes) -> Message:
    """Parse a CRC-checked payload; FrameError on version, type or length problems."""
    if len(payload) < HEADER.size:
        raise FrameError("bad_length", f"payload of {len(payload)} bytes is shorter than a header")
    version, msg_type, seq = HEADER.unpack_from(payload)
    if version != PROTOCOL_VERSION:
        raise FrameError("bad_version", f"version {version}, expected {PROTOCOL_VERSION}")
    body = payload[HEADER.size:]
    try:
        if msg_type == MSG_OBSERVATION:
            (n,) = struct.unpack_from("<H", body)
            if len(body) != 2 + 4 * n + 5:
                raise FrameError("bad_length", f"observation body of {len(body)} bytes for n={n}")
            values = struct.unpack_from(f"<{n}ffB", body, 2)
            flags = values[-1]
            return Observation(tuple(values[:n]), values[n], bool(flags & FLAG_EPISODE_END),
                               bool(flags & FLAG_RESET), seq, bool(flags & FLAG_TERMINAL),
                               bool(flags & FLAG_REPEAT))
        if msg_type == MSG_ACTION:
            _exact(body, 6)
            ack, action = struct.unpack("<Hi", body)
            return Action(ack, action, seq)
        if msg_type == MSG_HEARTBEAT:
            _exact(body, 4)
            return Heartbeat(struct.unpack("<I", body)[0], seq)
        if msg_type == MSG_ERROR:
            code, ref = struct.unpack_from("<BH", body)
            return Error(code, ref, body[3:].decode("utf-8", errors="replace"), seq)
    except struct.error as exc:
        raise FrameError("bad_length", str(exc)) from None
    raise FrameError("unknown_type", f"message type 0x{msg_type:02x}")


def _exact(body: bytes, size: int) -> None:
    if len(body) != size:
        raise FrameError("bad_length", f"body of {len(body)} bytes, expected {size}")


# -- stream decoding ---------------------------------------------------------------------------
class RateLimitedWarnings:
    """``log.warning`` for bad input that may recur every tick: the first of each cause, then
    at most one per ``every_s`` with the count so far, so a noisy wire cannot flood the log."""

    def __init__(self, logger: logging.Logger, every_s: float = WARN_EVERY_S) -> None:
        self.logger = logger
        self.every_s = every_s
        self._next: dict[str, float] = {}

    def warn(self, cause: str, count: int, text: str) -> None:
        now = time.monotonic()
        if now < self._next.get(cause, now):
            return
        self._next[cause] = now + self.every_s
        self.logger.warning("%s (%s: %d so far)", text, cause, count)


_DROP_CAUSES = ("bad_cobs", "bad_crc", "bad_version", "unknown_type", "bad_length", "oversize",
                "duplicates", "out_of_order")


@dataclass
class DecoderCounters:
    frames_ok: int = 0
    bad_cobs: int = 0
    bad_crc: int = 0
    bad_version: int = 0
    unknown_type: int = 0
    bad_length: int = 0
    oversize: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    seq_resyncs: int = 0

    @property
    def dropped(self) -> int:
        return sum(getattr(self, cause) for cause in _DROP_CAUSES)

    def dropped_by_cause(self) -> dict[str, int]:
        """The causes that dropped frames, with their counts."""
        return {cause: getattr(self, cause) for cause in _DROP_CAUSES if getattr(self, cause)}


@dataclass
class SeqTracker:
    """Accepts sequence numbers that move forward (mod 2**16) by less than half the range.

    Duplicates and older numbers are dropped. After ``resync_after`` rejections in a row
    (a peer that restarted without saying so) the next number is taken as the new start.
    """

    resync_after: int = 8
    last: int | None = None
    rejected_in_row: int = field(default=0, repr=False)

    def check(self, seq: int, restart: bool = False) -> str | None:
        """None when ``seq`` is accepted, else "duplicates" or "out_of_order".

        ``restart`` (a RESET frame) accepts any number but the last one accepted: that is the
        same RESET frame again, and taking it twice would start the episode twice.
        """
        fresh = self.last is None or self.rejected_in_row >= self.resync_after
        if fresh or (restart and seq != self.last):
            self.last, self.rejected_in_row = seq, 0
            return None
        delta = (seq - self.last) & 0xFFFF
        if 0 < delta < 0x8000:
            self.last, self.rejected_in_row = seq, 0
            return None
        self.rejected_in_row += 1
        return "duplicates" if delta == 0 else "out_of_order"

    def reset(self) -> None:
        self.last, self.rejected_in_row = None, 0


class FrameDecoder:
    """Incremental decoder: feed it any bytes, get the valid messages out.

    Never raises on what comes from the wire: every dropped frame increments one counter in
    ``counters``. The buffer holds at most one maximum-size encoded frame; longer runs
    without a 0x00 are discarded up to the next 0x00.
    """

    def __init__(self, max_payload: int = MAX_PAYLOAD, check_seq: bool = True,
                 warn_every_s: float = WARN_EVERY_S) -> None:
        self.max_frame = max_payload + CRC_SIZE + (max_payload + CRC_SIZE) // 254 + 1
        self.counters = DecoderCounters()
        self.warnings = RateLimitedWarnings(log, warn_every_s)
        self.seq = SeqTracker() if check_seq else None
        self._buf = bytearray()
        self._overflow = False

    def reset(self) -> None:
        """Forget partial input and the sequence state (after a reconnect)."""
        self._buf.clear()
        self._overflow = False
        if self.seq is not None:
            self.seq.reset()

    def feed(self, data: bytes) -> list[Message]:
        out: list[Message] = []
        start = 0
        while True:
            end = data.find(b"\x00", start)
            chunk = data[start:] if end < 0 else data[start:end]
            if not self._overflow:
                if len(self._buf) + len(chunk) > self.max_frame:
                    self._buf.clear()
                    self._overflow = True
                    self._drop("oversize", f"more than {self.max_frame} bytes without a 0x00")
                else:
                    self._buf += chunk
            if end < 0:
                return out
            if self._overflow:
                self._overflow = False
            elif self._buf:
                msg = self._decode_frame(bytes(self._buf))
                if msg is not None:
                    out.append(msg)
            self._buf.clear()
            start = end + 1

    def _drop(self, cause: str, detail: str) -> None:
        """Count a dropped frame under ``cause`` (a counter's name) and log it, rate-limited."""
        count = getattr(self.counters, cause) + 1
        setattr(self.counters, cause, count)
        self.warnings.warn(cause, count, f"serial: dropped a frame: {detail}")

    def _decode_frame(self, frame: bytes) -> Message | None:
        c = self.counters
        try:
            raw = cobs_decode(frame)
        except ValueError as exc:
            self._drop("bad_cobs", str(exc))
            return None
        if len(raw) < HEADER.size + CRC_SIZE:
            self._drop("bad_length", f"{len(raw)} bytes is shorter than a header and CRC")
            return None
        payload, (crc,) = raw[:-CRC_SIZE], struct.unpack("<H", raw[-CRC_SIZE:])
        if crc16_ccitt_false(payload) != crc:
            self._drop("bad_crc", "CRC mismatch")
            return None
        try:
            msg = decode_payload(payload)
        except FrameError as exc:
            self._drop(exc.reason, str(exc))
            return None
        if self.seq is not None:
            resyncing = self.seq.last is not None and self.seq.rejected_in_row >= \
                self.seq.resync_after
            verdict = self.seq.check(msg.seq, restart=isinstance(msg, Observation) and msg.reset)
            if verdict is not None:
                self._drop(verdict, f"seq {msg.seq} after {self.seq.last}")
                return None
            c.seq_resyncs += resyncing
        c.frames_ok += 1
        return msg
