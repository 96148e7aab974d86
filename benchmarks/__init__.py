"""Benchmarks of skcrosstune, each run from the repository root as ``python -m benchmarks.<name>``."""

import os

# Benchmarks never download: every model must already be on this machine.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
