"""Benchmark scripts: each prints figures (``python -m fuzz.bench.NAME``); none asserts a time."""
