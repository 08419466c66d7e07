"""A framed message link over a serial port that survives the port going away.

Single-threaded by design, so a control loop owns it: ``receive(timeout)`` reads, decodes,
sends heartbeats when due, and reopens a port that disappeared (USB unplug, robot power
cycle) with exponential backoff; ``send`` assigns sequence numbers and never raises on a
dead port (it returns False and counts it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import serial

from rlfm_edge.serial.protocol import (
    WARN_EVERY_S,
    FrameDecoder,
    Heartbeat,
    Message,
    RateLimitedWarnings,
    encode_frame,
)

log = logging.getLogger(__name__)


@dataclass
class LinkCounters:
    connects: int = 0
    disconnects: int = 0
    connect_failures: int = 0
    frames_sent: int = 0
    send_failures: int = 0  # messages not sent: port down or write error
    heartbeats_sent: int = 0
    heartbeats_received: int = 0


def open_serial(port: str, baudrate: int, timeout: float) -> serial.SerialBase:
    """Open a device path or any pyserial URL (loop://, socket://, rfc2217://)."""
    return serial.serial_for_url(port, baudrate=baudrate, timeout=timeout, write_timeout=1.0)


class SerialLink:
    """Messages in and out over one serial port, reconnecting when it fails.

    ``heartbeat_s``: a HEARTBEAT is sent when nothing was sent for that long (0 disables).
    Backoff between reconnect attempts doubles from ``backoff_initial_s`` to
    ``backoff_max_s`` and resets after a successful open. A port that cannot be opened is
    reported at the first failure, then every ``warn_every_s`` while it stays away.
    """

    def __init__(self, port: str, baudrate: int = 115200, *, heartbeat_s: float = 0.5,
                 backoff_initial_s: float = 0.05, backoff_max_s: float = 2.0,
                 read_timeout_s: float = 0.005, warn_every_s: float = WARN_EVERY_S,
                 opener: Callable[[str, int, float], serial.SerialBase] = open_serial) -> None:
        self.port_name = port
        self.baudrate = baudrate
        self.heartbeat_s = heartbeat_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.read_timeout_s = read_timeout_s
        self.counters = LinkCounters()
        self.decoder = FrameDecoder()
        self.last_heard: float | None = None  # time.monotonic() of the last valid frame
        self._opener = opener
        self._port: serial.SerialBase | None = None
        self._pending: deque[Message] = deque()
        self._seq = 0
        self._started = time.monotonic()
        self._last_sent = 0.0
        self._failures_in_row = 0
        self._next_attempt = 0.0
        self._warnings = RateLimitedWarnings(log, warn_every_s)  # a port that stays away: steady news

    @property
    def connected(self) -> bool:
        return self._port is not None

    def connect(self) -> bool:
        """Try to open the port now; on failure schedule the next attempt (backoff)."""
        if self._port is not None:
            return True
        try:
            self._port = self._opener(self.port_name, self.baudrate, self.read_timeout_s)
        except (serial.SerialException, OSError, ValueError) as exc:
            self.counters.connect_failures += 1
            delay = min(self.backoff_max_s,
                        self.backoff_initial_s * 2 ** min(self._failures_in_row, 30))
            self._failures_in_row += 1
            self._next_attempt = time.monotonic() + delay
            self._warnings.warn("connect_failures", self.counters.connect_failures,
                                f"cannot open {self.port_name} ({exc}); "
                                + ("retrying with backoff" if self.counters.connects else
                                   f"never connected in {time.monotonic() - self._started:.0f} s, "
                                   f"retrying with backoff"))
            return False
        self._failures_in_row = 0
        self.counters.connects += 1
        self.decoder.reset()
        log.info("connected to %s at %d baud", self.port_name, self.baudrate)
        return True

    def _drop_port(self, exc: Exception) -> None:
        log.warning("lost %s (%s); reconnecting", self.port_name, exc)
        self.counters.disconnects += 1
        with contextlib.suppress(serial.SerialException, OSError):
            self._port.close()
        self._port = None
        self._next_attempt = time.monotonic() + self.backoff_initial_s

    def send(self, msg: Message) -> bool:
        """Send one message with the next sequence number; False when it could not be sent."""
        if self._port is None:
            self.counters.send_failures += 1
            return False
        msg = dataclasses.replace(msg, seq=self._seq)
        try:
            self._port.write(encode_frame(msg))
        except (serial.SerialException, OSError) as exc:
            self.counters.send_failures += 1
            self._drop_port(exc)
            return False
        self._seq = (self._seq + 1) & 0xFFFF
        self._last_sent = time.monotonic()
        self.counters.frames_sent += 1
        return True

    def receive(self, timeout: float) -> Message | None:
        """The next valid message from the peer, or None after ``timeout`` seconds.

        Heartbeats from the peer are counted and not returned.
        """
        deadline = time.monotonic() + timeout
        while True:
            if self._pending:
                return self._pending.popleft()
            now = time.monotonic()
            if self._port is None:
                if now >= self._next_attempt and self.connect():
                    continue
                if now >= deadline:
                    return None
                time.sleep(max(0.0, min(self._next_attempt, deadline) - now))
                continue
            if self.heartbeat_s and now - self._last_sent >= self.heartbeat_s:
                self.counters.heartbeats_sent += self.send(
                    Heartbeat(int((now - self._started) * 1000)))
                continue
            self._read_once()
            if not self._pending and time.monotonic() >= deadline:
                return None

    def _read_once(self) -> None:
        try:
            data = self._port.read(max(1, self._port.in_waiting))
        except (serial.SerialException, OSError) as exc:
            self._drop_port(exc)
            return
        if not data:
            return
        for msg in self.decoder.feed(data):
            self.last_heard = time.monotonic()
            if isinstance(msg, Heartbeat):
                self.counters.heartbeats_received += 1
            else:
                self._pending.append(msg)

    def close(self) -> None:
        if self._port is not None:
            with contextlib.suppress(serial.SerialException, OSError):
                self._port.close()
            self._port = None

    def __enter__(self) -> SerialLink:
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.close()
