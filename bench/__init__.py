"""Benchmarks (not tests): python -m bench.step, python -m bench.methods."""
