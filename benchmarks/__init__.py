"""Benchmarks of mtl-bt against its baselines (``make bench`` / ``python -m benchmarks``).

Each module measures one thing side by side in one process (alternating runs,
median of several repeats) and returns plain dicts; ``__main__`` runs them all,
prints the tables and writes docs/benchmarks.md and benchmarks/results.json.
"""
