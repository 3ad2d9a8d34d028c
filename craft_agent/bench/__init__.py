"""Benchmarks: scripts that print figures (speed, memory, quality) rather than timed tests."""
