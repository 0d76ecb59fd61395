"""The benchmark harness behind ``benchmarks/run.py`` (not part of the geti_bulk package)."""
