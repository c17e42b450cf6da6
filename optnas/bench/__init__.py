"""Tabular benchmarks: architectures whose training outcome is known, for comparing strategies.

``optnas.bench.nb201``: NAS-Bench-201 (every cell's accuracy, parameters and latency).
"""

from __future__ import annotations

from optnas.bench import nb201

__all__ = ["nb201"]
