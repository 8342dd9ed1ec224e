"""The process a worker runs in: its garbage collector, tuned once start-up is done."""

from __future__ import annotations

import gc

__all__ = ["YOUNG_THRESHOLD", "settle_heap"]

# Collect the youngest generation every 10,000 net allocations instead of CPython's 700.
YOUNG_THRESHOLD = 10_000

_settled = False


def settle_heap() -> None:
    """Keep the cyclic garbage collector off what lives as long as the process.

    Start-up builds objects that live until exit (imported modules, botocore's service models,
    the configuration, connection pools), and every older-generation collection walks them all
    again. `gc.freeze()` moves them out of the collector's sight, and a larger first threshold
    lets the short-lived objects of each send die by reference counting before a collection
    looks at them. On the no-op pool drain (bench.queue) collections took about a quarter of the
    worker's CPU per job before this. Once per process: later calls (a test process starts
    many workers) do nothing.
    """
    global _settled
    if _settled:
        return
    _settled = True
    gc.collect()
    gc.freeze()
    young, middle, old = gc.get_threshold()
    if young and young < YOUNG_THRESHOLD:  # (0: someone disabled automatic collection)
        gc.set_threshold(YOUNG_THRESHOLD, middle, old)
