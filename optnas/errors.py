"""Errors optnas raises where a plain ValueError or TypeError would not say enough."""

from __future__ import annotations

__all__ = ["ParentGone", "SearchError", "StorageError", "Terminated", "interruption"]


class SearchError(RuntimeError):
    """A search could not go on: its first trials all failed (the message names the cause)."""


class StorageError(RuntimeError):
    """A study's storage cannot be opened or written, or holds an incompatible study."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a job scheduler's stop) where the ``optnas`` command handles it:
    it ends a search as Ctrl-C does, so that running trials are recorded as failed."""


class ParentGone(KeyboardInterrupt):
    """A worker's parent (``optnas search --workers N``) died: the worker stops as Ctrl-C
    would stop it, recording its running trials' ends."""


def interruption(error: KeyboardInterrupt) -> str:
    """What interrupted: ``"SIGTERM"``, ``"its parent process ended"`` or ``"Ctrl-C"``.

    Example:
        >>> interruption(Terminated()), interruption(KeyboardInterrupt())
        ('SIGTERM', 'Ctrl-C')
    """
    if isinstance(error, ParentGone):
        return "its parent process ended"
    return "SIGTERM" if isinstance(error, Terminated) else "Ctrl-C"
