"""Benchmarks against the established tools, run on demand (`make bench-*`), never in tests."""
