"""Benchmarks (see docs/benchmarks.md); each script prints medians of several runs."""
