"""Retention: finished mail loses its content, then its rows, as `[retention]` says."""

from __future__ import annotations

from dispatcher.retention.policy import BatchSizer, Cutoff, Due, cutoffs, due
from dispatcher.retention.store import Pruner, PruneReport, run_pruner

__all__ = ["BatchSizer", "Cutoff", "Due", "PruneReport", "Pruner", "cutoffs", "due", "run_pruner"]
