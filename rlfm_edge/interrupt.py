"""Ctrl-C and SIGTERM for long commands: stop, keep what finished, say in one line how to go on.

Inside ``stop_signals()`` both Ctrl-C (SIGINT) and SIGTERM (systemd, docker stop, kill) raise
``Interrupted`` in the main thread, wherever it is, as Ctrl-C alone raises KeyboardInterrupt
(``Interrupted`` is one). The CLI's ``main`` runs every command inside it, prints the line
and exits with 128 + the signal number (130 for Ctrl-C, 143 for SIGTERM), as shells do::

    rlfm-edge bench: stopped by Ctrl-C (SIGINT); wrote the 12 of 40 runs that finished to ...

A command that can keep something catches ``Interrupted``, keeps it, and raises the same
stop again with the words for that line; work in between passes the finished part up in
``partial``::

    try:
        results = run_jobs(...)
    except Interrupted as stop:
        write_report(assemble(stop.partial), out)
        raise stop.saying(f"wrote the {k} of {n} runs that finished to {out}; "
                          "run the command again for all of them") from None

A pool's workers are started inside ``signals_held()`` and run ``worker_init`` (its
initializer): Ctrl-C, which a terminal sends to the whole process group, then reaches only
the parent, which stops the pool, and SIGTERM ends a worker at once.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

NOTHING_KEPT = "it had not written its results yet; run it again"
_NAMES = {signal.SIGINT: "Ctrl-C (SIGINT)", signal.SIGTERM: "SIGTERM"}


class Interrupted(KeyboardInterrupt):
    """A stop asked for by a signal; ``kept`` says what was kept and how to go on."""

    def __init__(self, signum: int = signal.SIGINT, kept: str = "", partial: object = None) -> None:
        super().__init__(signum, kept)
        self.signum = int(signum)
        self.kept = kept
        self.partial = partial  # the finished part of the interrupted work, for its caller

    def saying(self, kept: str) -> Interrupted:
        """The same stop, with the words for its line."""
        return Interrupted(self.signum, kept)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def line(self, command: str) -> str:
        name = _NAMES.get(self.signum, f"signal {self.signum}")
        return f"{command}: stopped by {name}; {self.kept or NOTHING_KEPT}"


def _raise(signum: int, frame) -> None:
    raise Interrupted(signum)


@contextlib.contextmanager
def stop_signals() -> Iterator[None]:
    """While inside, SIGINT and SIGTERM raise Interrupted in the main thread. Only the main
    thread may install signal handlers; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _raise) for sig in _NAMES}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Start a pool's workers inside this: they begin with Ctrl-C ignored, so one that comes
    before their ``worker_init`` cannot stop a worker half-started (a traceback from its
    imports). An ignored signal stays ignored across fork and exec, and Python then installs
    no KeyboardInterrupt handler. This process holds SIGINT and SIGTERM back meanwhile and
    gets them when the block ends."""
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, set(_NAMES))
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    try:
        yield
    finally:
        if main:
            signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)


def worker_init() -> None:
    """For worker processes: ignore Ctrl-C (the parent stops the pool), die on SIGTERM."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
