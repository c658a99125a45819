"""Running the paper's experiments on real data: datasets, reference maps, the runner, tables."""

from micam.evaluation.datasets import Dataset, Sample, read_dataset
from micam.evaluation.references import REFERENCES, CentreGaussian, RandomMap
from micam.evaluation.runner import evaluate
from micam.evaluation.settings import ALL_METHODS, METRIC_GROUPS, EvaluationSettings

__all__ = [
    "ALL_METHODS",
    "METRIC_GROUPS",
    "REFERENCES",
    "CentreGaussian",
    "Dataset",
    "EvaluationSettings",
    "RandomMap",
    "Sample",
    "evaluate",
    "read_dataset",
]
