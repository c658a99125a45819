"""Faithfulness and localization metrics of the MI-CAM paper, batched, on the model's device."""

from micam.metrics.confidence import classic_drop_increase, paper_drop_increase
from micam.metrics.deletion_insertion import auc, deletion_insertion, make_baseline
from micam.metrics.localization import box_mask, energy_pointing_game, pointing_game
from micam.metrics.scores import class_scores

__all__ = [
    "auc",
    "box_mask",
    "class_scores",
    "classic_drop_increase",
    "deletion_insertion",
    "energy_pointing_game",
    "make_baseline",
    "paper_drop_increase",
    "pointing_game",
]
