"""Warnings biounet gives about a run that goes on (the CLI prints them as one line each)."""

from __future__ import annotations


class BiounetWarning(UserWarning):
    """Something the user should know about a run that still succeeds
    (non-finite pixels treated as background, an out-of-memory retry, ...)."""


__all__ = ["BiounetWarning"]
