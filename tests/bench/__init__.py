"""Benchmarks of the relay (issue 8): ingest against a bare app, dispatch latency, flat
memory on a large file, and cost against stored history. Run `python -m tests.bench`.

Not part of the default pytest run: no module here is named `test_*.py`.
"""
