"""Benchmarks: ``python -m bench.api`` (see BENCHMARKS.md)."""
