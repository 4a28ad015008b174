"""pytest-benchmark files (``pytest benchmarks/bench --benchmark-only``): single operations and
macro runs. Not installed with the package; run them from a checkout."""
