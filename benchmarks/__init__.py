"""edgeskin benchmarks: pytest-benchmark suites (``pytest benchmarks``) and the report (``python -m benchmarks.report``)."""
