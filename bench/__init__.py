"""Benchmarks of edged's ingest paths. Run them all with ``python -m bench`` (see bench/README.md)."""
