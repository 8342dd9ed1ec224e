"""Prometheus metrics: what this process did (copied from its plain counters once a second, so
the send path only adds to integers and lists), and what Postgres holds for every process
(read at scrape time, bounded: see metrics.sql for what each query costs).

Under `run --processes N` every child answers on the same socket, so a scrape lands on any of
them: the process-local metrics then live in prometheus-client's multiprocess files (a
directory the parent makes, named by PROMETHEUS_MULTIPROC_DIR) and each scrape sums them all.

The parts: process_metrics.py (this process), shared_facts.py (what Postgres holds) and
shared_metrics.py (those facts as families); this module puts one scrape together.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator

from prometheus_client import generate_latest
from prometheus_client.core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from dispatcher.config.settings import GuardSettings
from dispatcher.obs.process_metrics import ProcessMetrics
from dispatcher.obs.shared_facts import (
    QUEUE_STATES,
    SHARED_TIMEOUT,
    AccountFacts,
    CampaignFacts,
    SharedFacts,
    SharedReader,
    read_shared,
)
from dispatcher.obs.shared_metrics import gauge, shared_families

__all__ = [
    "CONTENT_TYPE",
    "MULTIPROC_ENV",
    "QUEUE_STATES",
    "SHARED_TIMEOUT",
    "AccountFacts",
    "CampaignFacts",
    "ProcessMetrics",
    "SharedFacts",
    "SharedReader",
    "multiprocess_dir",
    "process_source",
    "read_shared",
    "reap",
    "render",
    "shared_families",
]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus-client reads it when first imported
# The text format every Prometheus since 2.0 parses (prometheus-client's latest is 1.0.0).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Families(Collector):
    """Already-read families as a collector (generate_latest asks collectors)."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families


class _Chain(Collector):
    def __init__(self, *parts: Collector) -> None:
        self._parts = parts

    def collect(self) -> Iterator[Metric]:
        for part in self._parts:
            yield from part.collect()


def process_source(local: ProcessMetrics) -> Collector:
    """This process's metrics, or every process's (summed) under `run --processes`."""
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        return MultiProcessCollector(None, path=path)  # type: ignore[no-untyped-call]
    return local.registry


def render(
    local: ProcessMetrics,
    facts: SharedFacts | None,
    guard: GuardSettings,
    ready: bool | None = None,
) -> bytes:
    """One scrape's text: the processes' metrics, then the shared ones (and readiness, when
    judged: /readyz's answer as a gauge, for alerts)."""
    families = list(shared_families(facts, guard))
    if ready is not None:
        verdict = gauge("dispatcher_ready", "1 when /readyz would answer 200 (this process)")
        verdict.add_metric([], 1.0 if ready else 0.0)
        families.append(verdict)
    return generate_latest(_Chain(process_source(local), _Families(families)))


@contextlib.contextmanager
def multiprocess_dir(enabled: bool) -> Iterator[str | None]:
    """For `run --processes`: a fresh directory for the children's metric files (None if not
    `enabled`), removed at the end."""
    if not enabled:
        yield None
        return
    path = tempfile.mkdtemp(prefix="dispatcher-metrics-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


async def reap(child: asyncio.subprocess.Process, path: str | None) -> int:
    """A child's exit code, once it ended; its live gauges leave the sums (its counters stay)."""
    code = await child.wait()
    if path is not None:
        mark_process_dead(child.pid, path)  # type: ignore[no-untyped-call]
    return code
