"""Every step of the online agent in an MCAP file with ROS 2 (CDR) message encodings.

`ros2 bag info` and Foxglove read the file as is: the message definitions travel in its
schemas. Topic ``/rlfm/info`` holds one ``rlfm_edge_msgs/msg/LogInfo`` (sizes, horizon, the
discretizer YAML); topic ``/rlfm/step`` one ``rlfm_edge_msgs/msg/Step`` per agent step. A step
whose ``prev_state`` is >= 0 records the transition (prev_state, prev_action, reward, state);
the first step of an episode has ``prev_state = -1``. Replaying those transitions rebuilds the
CountStats of the run (`read_statistics`), the input of the offline mode.
"""

from __future__ import annotations

import logging
import os
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from mcap.opcode import Opcode
from mcap.records import Channel, Chunk, Schema
from mcap.records import Message as McapMessage
from mcap.stream_reader import StreamReader, breakup_chunk
from mcap.well_known import MessageEncoding, SchemaEncoding
from mcap_ros2.decoder import DecoderFactory
from mcap_ros2.writer import Writer

from rlfm_edge.stats import CountStats

INFO_TOPIC = "/rlfm/info"
STEP_TOPIC = "/rlfm/step"
INFO_TYPE = "rlfm_edge_msgs/msg/LogInfo"
STEP_TYPE = "rlfm_edge_msgs/msg/Step"
LOG_FORMAT_VERSION = 1

log = logging.getLogger(__name__)

_TIME_DEF = "MSG: builtin_interfaces/Time\nint32 sec\nuint32 nanosec\n"
_SEPARATOR = "=" * 80 + "\n"

INFO_DEF = """\
# The run a transition log belongs to.
uint32 format_version
int32 n_states
int32 n_actions
int32 horizon
string discretizer_yaml
"""

STEP_DEF = """\
# One OnlineAgent.step: the observation received, its state, the action chosen for it,
# and the transition it closes (prev_state = -1 at an episode's first step: none).
builtin_interfaces/Time stamp
uint32 episode
uint64 step
float32[] observation
int32 state
int32 action
float32 reward
int32 prev_state
int32 prev_action
uint32 latency_ns
""" + _SEPARATOR + _TIME_DEF


@dataclass(frozen=True)
class StepRecord:
    stamp_ns: int
    episode: int
    step: int
    observation: np.ndarray
    state: int
    action: int
    reward: float
    prev_state: int
    prev_action: int
    latency_ns: int


class TransitionLogger:
    """Appends step records to an MCAP file; ``close()`` writes the index (call it)."""

    def __init__(self, path: str | os.PathLike, n_states: int, n_actions: int, horizon: int,
                 discretizer_yaml: str = "") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # rw-r--r-- whatever the umask: a log other users could rewrite could poison `replay`
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.fchmod(fd, 0o644)
        self._file = os.fdopen(fd, "wb")  # owned until close()
        self._writer = Writer(self._file)
        self._step_schema = self._writer.register_msgdef(STEP_TYPE, STEP_DEF)
        info_schema = self._writer.register_msgdef(INFO_TYPE, INFO_DEF)
        self._writer.write_message(INFO_TOPIC, info_schema, {
            "format_version": LOG_FORMAT_VERSION, "n_states": n_states, "n_actions": n_actions,
            "horizon": horizon, "discretizer_yaml": discretizer_yaml}, log_time=time.time_ns())
        self._seq = 0

    def write(self, episode: int, step: int, observation, state: int, action: int,
              reward: float, prev_state: int, prev_action: int, latency_ns: int) -> None:
        now = time.time_ns()
        self._writer.write_message(STEP_TOPIC, self._step_schema, {
            "stamp": {"sec": now // 1_000_000_000, "nanosec": now % 1_000_000_000},
            "episode": episode, "step": step, "observation": [float(v) for v in observation],
            "state": state, "action": action, "reward": float(reward),
            "prev_state": prev_state, "prev_action": prev_action,
            "latency_ns": min(int(latency_ns), 0xFFFFFFFF)}, log_time=now, sequence=self._seq)
        self._seq += 1

    def close(self) -> None:
        if not self._file.closed:
            self._writer.finish()
            self._file.close()

    def __enter__(self) -> TransitionLogger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# Reading: the file is outside input. Records may not claim more than the file holds, chunks
# may not inflate beyond MAX_CHUNK_BYTES, and messages are decoded with this module's own
# definitions (a log whose schema text differs is refused), so a corrupted or crafted log
# gives a ValueError, not a parser crash in a dependency or an allocation it asked for.
# A log whose writer never finished (crash, kill -9, power loss) ends without its footer,
# often inside a chunk: it is read up to its last complete record, with a warning.
MAX_CHUNK_BYTES = 64 << 20  # TransitionLogger writes 1 MiB chunks
MAX_STATISTICS_BYTES = 1 << 30  # CountStats a log's LogInfo may ask read_statistics to allocate
_DEFS = {INFO_TOPIC: (INFO_TYPE, INFO_DEF), STEP_TOPIC: (STEP_TYPE, STEP_DEF)}
_MAGIC_SIZE = 8
_RECORD_HEAD = struct.Struct("<BQ")  # opcode, length
_OPCODES = frozenset(Opcode)


def _decoder(topic: str):
    name, definition = _DEFS[topic]
    schema = Schema(id=0, name=name, encoding=SchemaEncoding.ROS2, data=definition.encode())
    return DecoderFactory().decoder_for(MessageEncoding.CDR, schema)


def _cut_short(f, pos: int, size: int) -> bool:
    """Whether the records from ``pos`` on run out before the footer and the closing magic:
    the file of a writer that never finished, rather than a corrupted one."""
    while pos + _RECORD_HEAD.size <= size:
        f.seek(pos)
        opcode, length = _RECORD_HEAD.unpack(f.read(_RECORD_HEAD.size))
        if opcode not in _OPCODES:
            return False
        pos += _RECORD_HEAD.size + length
        if opcode == Opcode.FOOTER:
            return pos + _MAGIC_SIZE > size
    return True


def _records(f, size: int, path: Path):
    """The MCAP records of an open file, chunks checked and broken up here; a file cut short
    gives its complete records and a warning."""
    records = StreamReader(f, emit_chunks=True, validate_crcs=True, record_size_limit=size).records
    while True:
        start = f.tell()
        try:
            record = next(records)
        except StopIteration:
            return
        except Exception:
            if start < _MAGIC_SIZE or not _cut_short(f, start, size):
                raise
            log.warning("%s: the log was cut short (its writer did not finish: crash, kill or "
                        "power loss); read it up to byte %d of %d", path, start, size)
            return
        if not isinstance(record, Chunk):
            yield record
            continue
        if record.compression not in ("", "zstd") or record.uncompressed_size > MAX_CHUNK_BYTES:
            raise ValueError(f"chunk of {record.uncompressed_size} bytes compressed with "
                             f"{record.compression!r} (expected zstd or none, at most "
                             f"{MAX_CHUNK_BYTES} bytes)")
        yield from breakup_chunk(record, validate_crc=True)


def _messages(path: Path, topic: str):
    decode = _decoder(topic)
    schema_type, schema_data = _DEFS[topic][0], _DEFS[topic][1].encode()
    schemas: dict[int, Schema] = {}
    channels: dict[int, Channel] = {}
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            for record in _records(f, size, path):
                if isinstance(record, Schema):
                    schemas[record.id] = record
                elif isinstance(record, Channel):
                    channels[record.id] = record
                elif isinstance(record, McapMessage):
                    channel = channels.get(record.channel_id)
                    if channel is None or channel.topic != topic:
                        continue
                    schema = schemas.get(channel.schema_id)
                    if schema is None or (schema.name, schema.data) != (schema_type, schema_data) \
                            or channel.message_encoding != MessageEncoding.CDR:
                        raise ValueError(f"{topic} is not recorded as {schema_type} (CDR) of log "
                                         f"format {LOG_FORMAT_VERSION}")
                    yield decode(record.data)
    except FileNotFoundError:
        raise ValueError(f"{path}: log file not found") from None
    except Exception as exc:  # noqa: BLE001 - mcap, zstd and CDR raise many types on bad bytes
        raise ValueError(f"{path}: not a readable rlfm-edge MCAP log ({type(exc).__name__}: "
                         f"{exc})") from None


def read_info(path: str | os.PathLike) -> dict:
    """The LogInfo record: n_states, n_actions, horizon, discretizer_yaml."""
    path = Path(path)
    for msg in _messages(path, INFO_TOPIC):
        if msg.format_version != LOG_FORMAT_VERSION:
            raise ValueError(f"{path}: log format version {msg.format_version}, expected "
                             f"{LOG_FORMAT_VERSION}")
        S, A = msg.n_states, msg.n_actions
        if S < 1 or A < 1 or S * A * S * 8 > MAX_STATISTICS_BYTES:
            raise ValueError(f"{path}: n_states={S}, n_actions={A} are not positive or give "
                             f"statistics above {MAX_STATISTICS_BYTES} bytes")
        return {"n_states": S, "n_actions": A, "horizon": msg.horizon,
                "discretizer_yaml": msg.discretizer_yaml}
    raise ValueError(f"{path}: no {INFO_TOPIC} record; not an rlfm-edge transition log")


def read_steps(path: str | os.PathLike) -> Iterator[StepRecord]:
    for m in _messages(Path(path), STEP_TOPIC):
        yield StepRecord(m.stamp.sec * 1_000_000_000 + m.stamp.nanosec, m.episode, m.step,
                         np.asarray(m.observation, dtype=np.float32), m.state, m.action,
                         m.reward, m.prev_state, m.prev_action, m.latency_ns)


def read_observations(path: str | os.PathLike) -> np.ndarray:
    """All observations (N, D) of a log, for fitting discretizer bins.

    Records without an observation (the terminal state's bookkeeping) are skipped.
    """
    rows = [r.observation for r in read_steps(path) if r.observation.size]
    if not rows:
        raise ValueError(f"{path}: the log holds no observations")
    if len({r.size for r in rows}) > 1:
        raise ValueError(f"{path}: observations of different lengths "
                         f"{sorted({r.size for r in rows})}; one log per robot")
    return np.stack(rows)


def read_statistics(path: str | os.PathLike) -> CountStats:
    """CountStats of every transition in the log (sizes from its LogInfo record)."""
    info = read_info(path)
    s, a, r, s2 = [], [], [], []
    for rec in read_steps(path):
        if rec.prev_state >= 0:
            s.append(rec.prev_state)
            a.append(rec.prev_action)
            r.append(rec.reward)
            s2.append(rec.state)
    stats = CountStats(info["n_states"], info["n_actions"])
    try:
        stats.update_batch(np.asarray(s, np.int64), np.asarray(a, np.int64),
                           np.asarray(r, np.float64), np.asarray(s2, np.int64))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: transitions do not fit S={info['n_states']}, "
                         f"A={info['n_actions']} ({exc})") from None
    return stats
