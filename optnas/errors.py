"""Errors optnas raises where a plain ValueError or TypeError would not say enough."""

from __future__ import annotations

__all__ = ["SearchError", "StorageError"]


class SearchError(RuntimeError):
    """A search could not go on: its first trials all failed (the message names the cause)."""


class StorageError(RuntimeError):
    """A study's storage cannot be opened or written, or holds an incompatible study."""
