"""Benchmarks for requests-pinning (see README, Performance)."""
