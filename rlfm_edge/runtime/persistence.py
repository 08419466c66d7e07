"""Crash-safe statistics on disk: load at startup with fallback, save periodically.

Saving goes through CountStats.save (temporary file, fsync, rename, previous file kept as
``<path>.prev``). A failed save (disk full, read-only medium) is logged and counted and
leaves the files already on disk untouched; the caller's loop carries on. A periodic or final
save with nothing new since the statistics were loaded or saved is skipped, so a run that
learned nothing (a port that never appeared) leaves the files as they were.

Loading never starts from empty counts in silence:
- a corrupted main file with a good ``.prev``: the agent starts from ``.prev`` and the damaged
  file is moved aside (``<path>.corrupt``, numbered if taken), so the next save cannot push the
  last good copy out of ``.prev``;
- both unreadable: both are moved aside, and the start fails with the next step: the
  ``rlfm-edge replay`` command that rebuilds the counts from the transition logs;
- no file, but damaged copies beside its path: the start fails with the same next step, until
  the counts are rebuilt or the damaged copies are removed (choosing empty counts).
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
                 every_steps: int | None = None, log_folder: str | os.PathLike | None = None) -> None:
        self.path = Path(path)
        self.every_s = every_s
        self.every_steps = every_steps
        self.log_folder = None if log_folder is None else Path(log_folder)  # named in messages
        self.counters = PersistenceCounters()
        self.loaded_from: Path | None = None
        self._lock = threading.Lock()
        self._last_time = time.monotonic()
        self._last_transitions = 0
        self._saved: tuple[CountStats, int] | None = None  # the statistics on disk, and their version

    @property
    def prev_path(self) -> Path:
        return self.path.with_name(self.path.name + ".prev")

    def damaged_copies(self) -> list[Path]:
        """Files this path's loading moved aside as unreadable."""
        pattern = glob.escape(self.path.name) + "*.corrupt*"
        return sorted(p for p in self.path.parent.glob(pattern) if p.is_file())

    def rebuild_hint(self) -> str:
        """The command that rebuilds these statistics from the transition logs."""
        logs = self.log_folder if self.log_folder is not None else "LOG_FOLDER"
        return f"rlfm-edge replay {logs} --out {self.path}"

    def load_or_new(self, n_states: int, n_actions: int) -> CountStats:
        """Saved statistics (or their last good copy), else empty ones; says which.

        Nothing on disk changes unless the statistics load, apart from moving unreadable copies
        aside. Temporary files of saves cut short by a crash (``<name>.*.tmp``) are removed
        then: one agent owns one statistics path.
        """
        if not self.path.exists() and not self.prev_path.exists():
            damaged = self.damaged_copies()
            if damaged:
                raise StatsFileError(
                    f"{self.path}: no statistics, but unreadable copies were moved aside "
                    f"earlier ({', '.join(map(str, damaged))}). Rebuild the counts from the "
                    f"transition logs: {self.rebuild_hint()}; or, to start from empty counts, "
                    f"delete those copies")
            log.info("no statistics at %s; starting from empty statistics", self.path)
            self._clean_stale_temporaries()
            stats = CountStats(n_states, n_actions)
            self._saved = (stats, stats.version)  # nothing worth a file until it learns
            return stats
        try:
            stats, used = CountStats.load_with_fallback(self.path)
        except StatsFileError as exc:
            moved = [self._move_aside(p) for p in (self.path, self.prev_path) if p.exists()]
            raise StatsFileError(
                f"{exc}; its last good copy {self.prev_path} is unreadable or missing too. "
                f"Moved the damaged files to {', '.join(map(str, moved))}. To go on, rebuild the "
                f"counts from the transition logs: {self.rebuild_hint()}, then start again") from None
        if (stats.n_states, stats.n_actions) != (n_states, n_actions):
            raise StatsFileError(
                f"{used}: statistics have S={stats.n_states}, A={stats.n_actions} but the "
                f"discretizer and action space give S={n_states}, A={n_actions}; move the file "
                f"away or point the agent at another statistics path")
        if used != self.path:
            if self.path.exists():
                corrupt = self._move_aside(self.path)
                log.warning("statistics file %s is unreadable (moved to %s); started from the "
                            "last good copy %s", self.path, corrupt, used)
            else:
                log.warning("statistics file %s is missing; started from the last good copy %s",
                            self.path, used)
        else:
            log.info("loaded statistics from %s (%d transitions)", used, stats.n_transitions)
            self._saved = (stats, stats.version)
        self._clean_stale_temporaries()
        self.loaded_from = used
        self._last_transitions = stats.n_transitions
        return stats

    def _move_aside(self, path: Path) -> Path:
        """Rename an unreadable file to ``<name>.corrupt`` (``.corrupt.1``, ... if taken)."""
        target = path.with_name(path.name + ".corrupt")
        n = 0
        while target.exists():
            n += 1
            target = path.with_name(f"{path.name}.corrupt.{n}")
        os.replace(path, target)
        return target

    def _clean_stale_temporaries(self) -> None:
        for stale in self.path.parent.glob(glob.escape(self.path.name) + ".*.tmp"):
            with contextlib.suppress(OSError):
                stale.unlink()
                log.info("removed %s, left by a save that was cut short", stale)

    def due(self, n_transitions: int) -> bool:
        if self.every_steps is not None and \
                n_transitions - self._last_transitions >= self.every_steps:
            return True
        return self.every_s is not None and time.monotonic() - self._last_time >= self.every_s

    def save(self, stats: CountStats, force: bool = False) -> bool:
        """Save now, unless nothing changed since these statistics were loaded or saved (and
        not ``force``); False (logged, counted) when the disk refused."""
        with self._lock:
            self._last_time = time.monotonic()
            self._last_transitions = stats.n_transitions
            if not force and self._saved is not None and self._saved[0] is stats \
                    and self._saved[1] == stats.version:
                return True
            try:
                stats.save(self.path, keep_previous=True)
            except OSError as exc:
                self.counters.save_failures += 1
                self.counters.last_save_error = str(exc)
                log.error("could not save statistics to %s (%s); the previous file is intact",
                          self.path, exc)
                return False
            self.counters.saves += 1
            self._saved = (stats, stats.version)
            return True
