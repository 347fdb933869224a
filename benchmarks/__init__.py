"""Benchmarks: `python -m benchmarks.micro`, `benchmarks/compare_ray.py`, `python -m benchmarks.scaling`."""
