"""Benchmarks: our pipeline against the alternatives, side by side in one run (ratios)."""

from examples import PROJECT_TEMPLATE  # noqa: F401  (puts the vendored core on the path)
