"""Benchmarks: run with `make bench` or `python -m bench.throughput`; not part of the tests."""
