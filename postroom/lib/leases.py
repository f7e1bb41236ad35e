"""Writes fenced by a lease: a worker that claimed a queue row (a bulk action, an import)
carries its lease_until as a token, and every later write is conditional on it, so a worker
that stalled past its lease cannot overwrite what its successor did."""

from __future__ import annotations

from django.db.models import QuerySet


class LeaseLost(Exception):
    """Another worker took the job over (or it was cancelled): stop, change nothing."""


def update_while_leased(held: QuerySet, **changes) -> None:
    """Apply `changes` to the one row `held` selects (by pk and lease); LeaseLost if none."""
    if held.update(**changes) != 1:
        raise LeaseLost()
