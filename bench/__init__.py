"""Benchmarks of the gate (see BENCHMARKS.md)."""
