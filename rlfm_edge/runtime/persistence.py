"""Crash-safe statistics on disk: load at startup with fallback, save periodically.

Saving goes through CountStats.save (temporary file, fsync, rename, previous file kept as
``<path>.prev``). A failed save (disk full, read-only medium) is logged and counted and
leaves the files already on disk untouched; the caller's loop carries on. A corrupted main
file found at startup is moved aside to ``<path>.corrupt`` so the next save cannot push the
last good copy out of ``.prev``.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from rlfm_edge.stats import CountStats, StatsFileError

log = logging.getLogger(__name__)


@dataclass
class PersistenceCounters:
    saves: int = 0
    save_failures: int = 0
    last_save_error: str = ""


class StatsPersistence:
    """Where one agent's statistics live, and when they are saved.

    A save is due every ``every_s`` seconds or ``every_steps`` new transitions, whichever
    comes first (None disables that trigger).
    """

    def __init__(self, path: str | os.PathLike, every_s: float | None = 60.0,
                 every_steps: int | None = None) -> None:
        self.path = Path(path)
        self.every_s = every_s
        self.every_steps = every_steps
        self.counters = PersistenceCounters()
        self.loaded_from: Path | None = None
        self._lock = threading.Lock()
        self._last_time = time.monotonic()
        self._last_transitions = 0

    @property
    def prev_path(self) -> Path:
        return self.path.with_name(self.path.name + ".prev")

    def load_or_new(self, n_states: int, n_actions: int) -> CountStats:
        """Saved statistics (or their last good copy), else empty ones; says which.

        Temporary files of saves cut short by a crash (``<name>.*.tmp``) are removed first:
        one agent owns one statistics path.
        """
        for stale in self.path.parent.glob(glob.escape(self.path.name) + ".*.tmp"):
            with contextlib.suppress(OSError):
                stale.unlink()
                log.info("removed %s, left by a save that was cut short", stale)
        if not self.path.exists() and not self.prev_path.exists():
            log.info("no statistics at %s; starting from empty statistics", self.path)
            return CountStats(n_states, n_actions)
        stats, used = CountStats.load_with_fallback(self.path)
        if used != self.path:
            corrupt = self.path.with_name(self.path.name + ".corrupt")
            if self.path.exists():
                os.replace(self.path, corrupt)
            log.warning("statistics file %s is unreadable (moved to %s); started from the last "
                        "good copy %s", self.path, corrupt, used)
        else:
            log.info("loaded statistics from %s (%d transitions)", used, stats.n_transitions)
        if (stats.n_states, stats.n_actions) != (n_states, n_actions):
            raise StatsFileError(
                f"{used}: statistics have S={stats.n_states}, A={stats.n_actions} but the "
                f"discretizer and action space give S={n_states}, A={n_actions}; move the file "
                f"away or point the agent at another statistics path")
        self.loaded_from = used
        self._last_transitions = stats.n_transitions
        return stats

    def due(self, n_transitions: int) -> bool:
        if self.every_steps is not None and \
                n_transitions - self._last_transitions >= self.every_steps:
            return True
        return self.every_s is not None and time.monotonic() - self._last_time >= self.every_s

    def save(self, stats: CountStats) -> bool:
        """Save now; False (logged, counted) when the disk refused."""
        with self._lock:
            self._last_time = time.monotonic()
            self._last_transitions = stats.n_transitions
            try:
                stats.save(self.path, keep_previous=True)
            except OSError as exc:
                self.counters.save_failures += 1
                self.counters.last_save_error = str(exc)
                log.error("could not save statistics to %s (%s); the previous file is intact",
                          self.path, exc)
                return False
            self.counters.saves += 1
            return True
