"""The paper's Table 4 side by side, in one run: MI-CAM timed against its peers and the authors' algorithm.

``run_benchmark(models=..., batch_sizes=..., device=...)`` times every (model, method, batch size) cell and
returns a ``BenchmarkResult``; ``write_benchmark(result, out)`` writes ``benchmark.json`` and ``benchmark.md``.
``micam benchmark``, ``micam reproduce`` and ``benchmarks/table4.py`` all run it.
"""

from micam.benchmark.authors import authors_weights
from micam.benchmark.result import LABELS, METHODS, BenchmarkResult, markdown, ratios, write_benchmark
from micam.benchmark.timing import MODELS, run_benchmark

__all__ = [
    "LABELS",
    "METHODS",
    "MODELS",
    "BenchmarkResult",
    "authors_weights",
    "markdown",
    "ratios",
    "run_benchmark",
    "write_benchmark",
]
