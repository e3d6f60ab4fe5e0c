"""Benchmarks and the official-style reference implementation (``benchmarks.official_style``)."""
