"""Faithfulness and localization metrics of the MI-CAM paper, batched, on the model's device."""

from micam.metrics.area_matched import area_matched_drop_increase
from micam.metrics.confidence import classic_drop_increase, paper_drop_increase
from micam.metrics.counterfactual import blur_box, counterfactual_weights, set_box, set_region, weight_change
from micam.metrics.deletion_insertion import auc, changed_fractions, deletion_insertion, make_baseline
from micam.metrics.localization import box_mask, energy_pointing_game, pointing_game
from micam.metrics.road import noisy_linear_imputation, road
from micam.metrics.sanity import cascading_randomization, parametrized_layers, randomization_stages
from micam.metrics.scores import class_scores
from micam.metrics.similarity import hog, hog_similarity, pearson, spearman, ssim
from micam.metrics.specs import MetricSpec, half_width, t_quantile
from micam.metrics.trackers import (
    METRIC_SPECS,
    ROAD,
    TRACKERS,
    AreaMatchedDropIncrease,
    ChannelSumCorrelation,
    ClassicDropIncrease,
    DeletionInsertion,
    DropIncrease,
    Localization,
    MetricBatch,
    MetricOptions,
    Tracker,
    summarize,
)

__all__ = [
    "METRIC_SPECS",
    "ROAD",
    "TRACKERS",
    "AreaMatchedDropIncrease",
    "ChannelSumCorrelation",
    "ClassicDropIncrease",
    "DeletionInsertion",
    "DropIncrease",
    "Localization",
    "MetricBatch",
    "MetricOptions",
    "MetricSpec",
    "Tracker",
    "area_matched_drop_increase",
    "auc",
    "blur_box",
    "box_mask",
    "cascading_randomization",
    "changed_fractions",
    "class_scores",
    "classic_drop_increase",
    "counterfactual_weights",
    "deletion_insertion",
    "energy_pointing_game",
    "half_width",
    "hog",
    "hog_similarity",
    "make_baseline",
    "noisy_linear_imputation",
    "paper_drop_increase",
    "parametrized_layers",
    "pearson",
    "pointing_game",
    "randomization_stages",
    "road",
    "set_box",
    "set_region",
    "spearman",
    "ssim",
    "summarize",
    "t_quantile",
    "weight_change",
]
