"""Every step of the online agent in an MCAP file with ROS 2 (CDR) message encodings.

`ros2 bag info` and Foxglove read the file as is: the message definitions travel in its
schemas. Topic ``/rlfm/info`` holds one ``rlfm_edge_msgs/msg/LogInfo`` (sizes, horizon, the
discretizer YAML); topic ``/rlfm/step`` one ``rlfm_edge_msgs/msg/Step`` per agent step. A step
whose ``prev_state`` is >= 0 records the transition (prev_state, prev_action, reward, state);
the first step of an episode has ``prev_state = -1``. Replaying those transitions rebuilds the
CountStats of the run (`read_statistics`), the input of the offline mode.

A robot's log is a folder of segments: each start of the agent writes a new ``.mcap`` file
there (``TransitionLogger.new_segment``) and no file is ever truncated or rewritten. The
readers take a file, a folder, or several of either (``segments``), and read a segment whose
writer was killed up to its last complete record.
"""

from __future__ import annotations

import logging
import os
import struct
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from mcap.opcode import Opcode
from mcap.records import Channel, Chunk, Schema
from mcap.records import Message as McapMessage
from mcap.stream_reader import StreamReader, breakup_chunk
from mcap.well_known import MessageEncoding, SchemaEncoding
from mcap.writer import MCAP0_MAGIC, CompressionType
from mcap.writer import Writer as McapWriter
from mcap_ros2._dynamic import serialize_dynamic  # the CDR encoders mcap_ros2's own Writer uses
from mcap_ros2.decoder import DecoderFactory

from rlfm_edge.stats import CountStats

INFO_TOPIC = "/rlfm/info"
STEP_TOPIC = "/rlfm/step"
INFO_TYPE = "rlfm_edge_msgs/msg/LogInfo"
STEP_TYPE = "rlfm_edge_msgs/msg/Step"
LOG_FORMAT_VERSION = 1
SEGMENT_SUFFIX = ".mcap"
# The crash-loss bound: a kill -9 or a power cut loses at most the steps of the last
# FLUSH_EVERY_S seconds (plus one bookkeeper tick, 50 ms); docs/robot-data.md.
FLUSH_EVERY_S = 1.0
CHUNK_BYTES = 1 << 20  # a chunk also closes when it holds this much, before FLUSH_EVERY_S

LogPaths = str | os.PathLike | Iterable[str | os.PathLike]  # a file, a folder, or several

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
    """Writes step records to one new MCAP file (a log segment); ``close()`` writes the index.

    The file is created at the first ``write`` (a run that never steps leaves no file) and
    never replaces an existing one. Every ``flush_every_s`` seconds the chunk in progress is
    closed, written and fsynced (``flush_if_due``, called by ``write`` and by the agent's
    bookkeeper while the robot is idle), so a kill -9 or a power cut loses at most the steps of
    the last ``flush_every_s`` seconds; the file then ends without its index, which the readers
    here accept.
    """

    def __init__(self, path: str | os.PathLike, n_states: int, n_actions: int, horizon: int,
                 discretizer_yaml: str = "", flush_every_s: float = FLUSH_EVERY_S) -> None:
        if not flush_every_s > 0:
            raise ValueError(f"flush_every_s: expected a number of seconds > 0, got {flush_every_s!r}")
        self.path = Path(path)
        check_log_folder(self.path.parent)
        if self.path.exists():
            raise ValueError(f"{self.path}: exists; a log segment is never overwritten")
        self.flush_every_s = float(flush_every_s)
        self._info = {"format_version": LOG_FORMAT_VERSION, "n_states": n_states,
                      "n_actions": n_actions, "horizon": horizon, "discretizer_yaml": discretizer_yaml}
        self._file = None  # opened by the first write, owned until close()
        self._writer: McapWriter | None = None
        self._seq = 0
        self._unflushed = False
        self._next_flush = 0.0
        self._closed = False

    @classmethod
    def new_segment(cls, folder: str | os.PathLike, n_states: int, n_actions: int, horizon: int,
                    discretizer_yaml: str = "", flush_every_s: float = FLUSH_EVERY_S) -> TransitionLogger:
        """A logger for a new segment in ``folder``, named after the UTC time of this call and
        the process id, so segments sort in the order the runs started."""
        now = time.time_ns()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now // 1_000_000_000))
        name = f"{stamp}.{now // 1000 % 1_000_000:06d}Z-{os.getpid()}{SEGMENT_SUFFIX}"
        return cls(Path(folder) / name, n_states, n_actions, horizon, discretizer_yaml, flush_every_s)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # rw-r--r-- whatever the umask: a log other users could rewrite could poison `replay`;
        # O_EXCL: a segment is never truncated, whatever else writes to the folder
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.fchmod(fd, 0o644)
        self._file = os.fdopen(fd, "wb")
        _fsync_folder(self.path.parent)  # the new name survives a power cut too
        self._writer = McapWriter(self._file, chunk_size=CHUNK_BYTES, compression=CompressionType.ZSTD)
        self._writer.start(profile="ros2", library="rlfm_edge")
        self._encode = {topic: serialize_dynamic(name, definition)[name]
                        for topic, (name, definition) in _DEFS.items()}
        self._channels = {}
        for topic, (name, definition) in _DEFS.items():
            schema = self._writer.register_schema(name, SchemaEncoding.ROS2, definition.encode())
            self._channels[topic] = self._writer.register_channel(topic, MessageEncoding.CDR, schema)
        self._add(INFO_TOPIC, self._info, time.time_ns())
        self.flush()  # a segment on disk always starts with its LogInfo

    def _add(self, topic: str, message: dict, now: int, sequence: int = 0) -> None:
        self._writer.add_message(self._channels[topic], now, self._encode[topic](message), now,
                                 sequence)
        self._unflushed = True

    def write(self, episode: int, step: int, observation, state: int, action: int,
              reward: float, prev_state: int, prev_action: int, latency_ns: int,
              stamp_ns: int | None = None) -> None:
        """One step; ``stamp_ns`` (time.time_ns() when the observation came) defaults to now."""
        if self._closed:
            raise ValueError(f"{self.path}: the log is closed")
        if self._writer is None:
            self._open()
        now = time.time_ns() if stamp_ns is None else stamp_ns
        self._add(STEP_TOPIC, {
            "stamp": {"sec": now // 1_000_000_000, "nanosec": now % 1_000_000_000},
            "episode": episode, "step": step, "observation": [float(v) for v in observation],
            "state": state, "action": action, "reward": float(reward),
            "prev_state": prev_state, "prev_action": prev_action,
            "latency_ns": min(int(latency_ns), 0xFFFFFFFF)}, now, self._seq)
        self._seq += 1
        self.flush_if_due()

    def flush_if_due(self) -> None:
        if self._unflushed and time.monotonic() >= self._next_flush:
            self.flush()

    def flush(self) -> None:
        """Close the chunk in progress and make everything written so far durable (fsync)."""
        if self._writer is None or self._closed:
            return
        self._next_flush = time.monotonic() + self.flush_every_s
        if not self._unflushed:
            return
        self._unflushed = False
        self._writer.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._file is not None:
            try:
                self._writer.finish()
                self._file.flush()
                os.fsync(self._file.fileno())
            finally:
                self._file.close()

    def __enter__(self) -> TransitionLogger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_log_folder(folder: str | os.PathLike) -> Path:
    """``folder`` as a Path if segments can go there (a folder, or a path where one can be
    made); a ValueError naming the problem otherwise, before anything is written."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"log: {folder} is a file; the log setting names a folder that gets one "
                         f"segment file per start (see docs/robot-data.md): name a folder")
    existing = next((p for p in (folder, *folder.parents) if p.exists()), Path("."))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"log: cannot write log segments under {folder} ({existing} is not "
                         f"writable)")
    return folder


def segments(paths: LogPaths) -> list[Path]:
    """The segment files that ``paths`` name: files as given, a folder's ``*.mcap`` files in
    name order (the order their runs started)."""
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not items:
        raise ValueError("log: no log files or folders given")
    out: list[Path] = []
    for item in map(Path, items):
        if item.is_dir():
            found = sorted(p for p in item.glob("*" + SEGMENT_SUFFIX) if p.is_file())
            if not found:
                raise ValueError(f"{item}: no log segments (*{SEGMENT_SUFFIX}) in this folder")
            out += found
        elif item.exists():
            out.append(item)
        else:
            raise ValueError(f"{item}: log file not found")
    return out


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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


def _zeros_from(f, pos: int, size: int) -> bool:
    """Whether the file holds only zero bytes from ``pos`` on: what a power cut can leave
    where a file's new length reached the disk before its data."""
    f.seek(pos)
    while pos < size:
        block = f.read(min(1 << 20, size - pos))
        if not block or block.count(0) != len(block):
            return False
        pos += len(block)
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
            if start < _MAGIC_SIZE or not (_cut_short(f, start, size) or _zeros_from(f, start, size)):
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
            if size < _MAGIC_SIZE and MCAP0_MAGIC.startswith(f.read()):
                log.warning("%s: empty segment (its writer was killed before its first flush)", path)
                return
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


def _read_info_one(path: Path) -> dict | None:
    """The segment's LogInfo; None for an empty segment (a writer killed before its first
    flush), a ValueError for a segment that is not a log."""
    if path.exists() and path.stat().st_size < _MAGIC_SIZE:
        list(_messages(path, INFO_TOPIC))  # warns, or raises for junk
        return None
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


def read_info(paths: LogPaths) -> dict:
    """The LogInfo record: n_states, n_actions, horizon, discretizer_yaml. Several segments
    must agree on the sizes and the discretizer (their state indices must mean the same
    states); the horizon is the last segment's."""
    found = [(path, info) for path in segments(paths)
             if (info := _read_info_one(path)) is not None]
    if not found:
        raise ValueError(f"{_names(paths)}: only empty log segments")
    (first_path, first), (_, last) = found[0], found[-1]
    for path, info in found[1:]:
        for key in ("n_states", "n_actions", "discretizer_yaml"):
            if info[key] != first[key]:
                raise ValueError(f"{path}: {key} differs from {first_path}'s; give the logs of "
                                 f"one robot configuration only")
    return last


def read_steps(paths: LogPaths) -> Iterator[StepRecord]:
    """Every step of the segments, segment after segment."""
    for path in segments(paths):
        for m in _messages(path, STEP_TOPIC):
            yield StepRecord(m.stamp.sec * 1_000_000_000 + m.stamp.nanosec, m.episode, m.step,
                             np.asarray(m.observation, dtype=np.float32), m.state, m.action,
                             m.reward, m.prev_state, m.prev_action, m.latency_ns)


def read_observations(paths: LogPaths) -> np.ndarray:
    """All observations (N, D) of the logs, for fitting discretizer bins.

    Records without an observation (the terminal state's bookkeeping) are skipped.
    """
    rows = [r.observation for r in read_steps(paths) if r.observation.size]
    if not rows:
        raise ValueError(f"{_names(paths)}: the log holds no observations")
    if len({r.size for r in rows}) > 1:
        raise ValueError(f"{_names(paths)}: observations of different lengths "
                         f"{sorted({r.size for r in rows})}; one log per robot")
    return np.stack(rows)


def read_transitions(paths: LogPaths) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(s, a, r, s_next) arrays of every transition the logs record, in order."""
    s, a, r, s2 = [], [], [], []
    for rec in read_steps(paths):
        if rec.prev_state >= 0:
            s.append(rec.prev_state)
            a.append(rec.prev_action)
            r.append(rec.reward)
            s2.append(rec.state)
    return (np.asarray(s, np.int64), np.asarray(a, np.int64), np.asarray(r, np.float64),
            np.asarray(s2, np.int64))


def read_statistics(paths: LogPaths) -> CountStats:
    """CountStats of every transition in the logs (sizes from their LogInfo records)."""
    info = read_info(paths)
    stats = CountStats(info["n_states"], info["n_actions"])
    try:
        stats.update_batch(*read_transitions(paths))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{_names(paths)}: transitions do not fit S={info['n_states']}, "
                         f"A={info['n_actions']} ({exc})") from None
    return stats


def _names(paths: LogPaths) -> str:
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    return ", ".join(map(str, items))
