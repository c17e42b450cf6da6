"""How Ctrl-C and SIGTERM end a search: the first interrupts it (raising
:class:`KeyboardInterrupt`, :class:`~optnas.errors.Terminated` or
:class:`~optnas.errors.ParentGone`); any other that comes while the interrupted trials'
ends are being recorded (a second press, a terminal's signal to a whole process group and
a parent passing its own on) is ignored, saying so on stderr, so that no trial is left
RUNNING half-recorded. One that comes after that window interrupts again: something hung.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from optnas.errors import ParentGone, Terminated

GRACE_SECONDS = 30.0
"""How long interrupted workers and pool processes get to record their trials' ends."""
_WINDOW_SECONDS = GRACE_SECONDS + 15.0  # the grace, then the recording of what it left


class _Interrupts:
    """The signal handler every interruption of this process goes through."""

    def __init__(self) -> None:
        self.first: float | None = None  # when the interruption came (time.monotonic)
        self.orphaned = threading.Event()  # set where this worker's parent died

    def received(self, signum: int) -> bool:
        """Note ``signum``: True where it interrupts (the first, or one after the window);
        False, said on stderr, where it came while the ends are being recorded."""
        now = time.monotonic()
        if self.first is not None and now < self.first + _WINDOW_SECONDS:
            left = self.first + _WINDOW_SECONDS - now
            print(
                f"optnas: still recording the interrupted trials' ends (at most {left:.0f} s "
                "more); wait for it, or the trials stay RUNNING.",
                file=sys.stderr,
                flush=True,
            )
            return False
        self.first = now
        return True

    def __call__(self, signum: int, frame: Any) -> None:
        if self.received(signum):
            raise self.error(signum)

    def error(self, signum: int) -> KeyboardInterrupt:
        """What ``signum`` interrupts with."""
        if signum == signal.SIGTERM:
            return Terminated()
        return ParentGone() if self.orphaned.is_set() else KeyboardInterrupt()


_INTERRUPTS = _Interrupts()


@contextlib.contextmanager
def interrupts_once(*, sigterm: bool = False) -> Iterator[None]:
    """Within: Ctrl-C interrupts once (see the module), where it would raise
    KeyboardInterrupt anyway (not where it is ignored, as in a shell script's background
    job, or a program around this one handles it); with ``sigterm`` (the ``optnas``
    command), SIGTERM does too. Only in the main thread.

    Example:
        >>> with interrupts_once():
        ...     pass
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _INTERRUPTS.first = None
    kinds = [signal.SIGTERM] if sigterm else []
    if signal.getsignal(signal.SIGINT) in (signal.default_int_handler, _INTERRUPTS):
        kinds.append(signal.SIGINT)
    previous = [signal.signal(kind, _INTERRUPTS) for kind in kinds]
    try:
        yield
    finally:
        for kind, handler in zip(kinds, previous, strict=True):
            signal.signal(kind, handler)


def answer_ctrl_c() -> None:
    """Let Ctrl-C interrupt this process once (see the module) even where it started out
    ignored: a worker, whose parent stops it with SIGINT."""
    signal.signal(signal.SIGINT, _INTERRUPTS)


def interrupt_as_orphan() -> None:
    """Interrupt this process because its parent died (raising ParentGone in the main
    thread); called from another thread."""
    _INTERRUPTS.orphaned.set()
    os.kill(os.getpid(), signal.SIGINT)


@contextlib.contextmanager
def interrupts_as_a_flag() -> Iterator[list[int]]:
    """Within: SIGINT and SIGTERM append to the list it yields instead of raising
    KeyboardInterrupt (or ending the process) wherever the main thread happens to be: a
    KeyboardInterrupt raised inside a finalizer (of a storage connection, say) is printed
    and dropped, and workers would never be told (a parent that exited 0 on Ctrl-C while
    its workers ran on was seen; one ended by SIGTERM left them training). Only the
    interrupting one is appended; those that come while ends are recorded are said and
    ignored (see the module).

    Example:
        >>> with interrupts_as_a_flag() as received:
        ...     pass
        >>> received
        []
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def note(signum: int, frame: Any) -> None:
        if _INTERRUPTS.received(signum):
            received.append(signum)

    kinds = (signal.SIGINT, signal.SIGTERM)
    previous = [signal.signal(kind, note) for kind in kinds]
    try:
        yield received
    finally:
        for kind, handler in zip(kinds, previous, strict=True):
            signal.signal(kind, handler)
