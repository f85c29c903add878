"""Benchmarks of the product's scale paths, run with ``python -m bench`` (see README.md)."""
