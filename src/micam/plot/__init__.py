"""The paper's figures for any model and images (matplotlib, no display needed).

Every function returns a ``matplotlib.figure.Figure`` and, given ``path``, also saves it as PNG. The
figures are built without pyplot: no global state, no display, nothing to close.
Inputs are plain tensors / arrays so that the figures can be drawn from a live run or from saved
results alike:

* ``comparison_grid`` — rows = images, columns = methods (Fig. 1 / 4 / 5);
* ``localization_view`` — a map with the ground-truth boxes and the pointing-game peak (Fig. 6);
* ``counterfactual_weights_plot`` — actual vs counterfactual channel weights (Fig. 7 / 10);
* ``sanity_strip`` — the map after each cascading-randomization stage (Fig. 8);
* ``channel_weights_plot`` — each method's weight per channel, in channel order or sorted (Fig. 9);
* ``deletion_insertion_plot`` — mean deletion / insertion curves per method, AUC in the legend;
* ``paired_differences_plot`` — one method against each baseline, image-by-image differences with their
  95 % CI, per metric and model, signed so that right = the method is better.

``micam.plot.overlay`` holds what they draw on: ``restore_image`` (a normalized tensor back to RGB),
``overlay_heatmap`` and ``save_overlay`` (a map blended over the image).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib import patches
from matplotlib.figure import Figure

from micam.metrics.deletion_insertion import auc
from micam.metrics.localization import pointing_game
from micam.plot.overlay import overlay_heatmap

ArrayLike = np.ndarray | torch.Tensor


def _np(x: ArrayLike | Sequence[float]) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _subplots(*grid: int, figsize: tuple[float, float], dpi: int = 100, **kwargs: Any) -> tuple[Figure, Any]:
    figure = Figure(figsize=figsize, dpi=dpi)
    return figure, figure.subplots(*grid, **kwargs)


def _finish(figure: Figure, path: str | Path | None) -> Figure:
    figure.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=figure.dpi)
    return figure


def comparison_grid(
    images: Sequence[np.ndarray],
    maps: Mapping[str, ArrayLike],
    titles: Sequence[str] | None = None,
    path: str | Path | None = None,
    cell: float = 2.0,
) -> Figure:
    """Rows = images ((H, W, 3) in [0, 1]), columns = the input then one overlay per method.

    ``maps[method]`` is (B, H, W) in [0, 1]; ``titles[i]`` (e.g. the class name) heads row i.
    """
    if not images:
        raise ValueError("comparison_grid needs at least one image")
    names = list(maps)
    rows, cols = len(images), len(names) + 1
    figure, axes = _subplots(rows, cols, figsize=(cell * cols, cell * rows + 0.3), dpi=100, squeeze=False)
    for i, image in enumerate(images):
        axes[i, 0].imshow(image)
        axes[i, 0].set_title(titles[i] if titles else "input", fontsize=8)
        for j, name in enumerate(names, start=1):
            axes[i, j].imshow(overlay_heatmap(image, _np(maps[name])[i]))
            if i == 0:
                axes[i, j].set_title(name, fontsize=9)
    for axis in axes.flat:
        axis.axis("off")
    return _finish(figure, path)


def localization_view(
    image: np.ndarray,
    cam: ArrayLike,
    boxes: Sequence[Sequence[float]],
    title: str = "",
    tolerance: float = 15.0,
    path: str | Path | None = None,
) -> Figure:
    """The map over the image, its ground-truth boxes (green) and its maximum, marked as a hit (o)
    or a miss (x) of the pointing game at ``tolerance`` pixels."""
    cam_np = _np(cam)
    y, x = np.unravel_index(int(np.argmax(cam_np)), cam_np.shape)
    hit = bool(boxes) and bool(pointing_game(torch.as_tensor(cam_np)[None], [boxes], tolerance)[0])  # the metric's rule
    figure, axis = _subplots(figsize=(3.2, 3.4), dpi=100)
    axis.imshow(overlay_heatmap(image, cam_np))
    for x0, y0, x1, y1 in boxes:
        axis.add_patch(patches.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="lime", linewidth=1.5))
    axis.plot([x], [y], marker="o" if hit else "x", color="white", markersize=9, markeredgewidth=2)
    axis.set_title(f"{title} — {'hit' if hit else 'miss'}".strip(" —"), fontsize=9)
    axis.axis("off")
    return _finish(figure, path)


def counterfactual_weights_plot(
    actual: ArrayLike,
    counterfactual: ArrayLike,
    method: str,
    intervention: str = "counterfactual",
    path: str | Path | None = None,
) -> Figure:
    """Per-channel weights of the actual and counterfactual input (left, channels in the actual
    weights' order) and one against the other (right; the diagonal = no change)."""
    a, c = _np(actual).ravel(), _np(counterfactual).ravel()
    order = np.argsort(-a)
    figure, (left, right) = _subplots(1, 2, figsize=(9, 3.2), dpi=100, gridspec_kw={"width_ratios": [2.2, 1]})
    left.plot(a[order], label="actual", linewidth=1.2)
    left.plot(c[order], label=intervention, linewidth=0.8, alpha=0.8)
    left.set_xlabel("channel (sorted by actual weight)")
    left.set_ylabel("weight")
    left.set_title(f"{method}: channel weights", fontsize=10)
    left.legend(fontsize=8)
    right.scatter(a, c, s=4, alpha=0.5)
    lo, hi = float(min(a.min(), c.min())), float(max(a.max(), c.max()))
    right.plot([lo, hi], [lo, hi], color="gray", linewidth=0.8)
    right.set_xlabel("actual")
    right.set_ylabel(intervention)
    return _finish(figure, path)


def sanity_strip(
    image: np.ndarray,
    maps: Sequence[ArrayLike],
    labels: Sequence[str],
    method: str = "",
    path: str | Path | None = None,
) -> Figure:
    """One method's map after each randomization stage, left to right (the first is the original)."""
    if len(maps) != len(labels):
        raise ValueError(f"{len(maps)} maps for {len(labels)} labels")
    figure, axes = _subplots(1, len(maps), figsize=(1.6 * len(maps), 2.0), dpi=100, squeeze=False)
    for axis, cam, label in zip(axes[0], maps, labels, strict=True):
        axis.imshow(overlay_heatmap(image, _np(cam)))
        axis.set_title(label, fontsize=7)
        axis.axis("off")
    if method:
        figure.suptitle(f"{method}: cascading randomization", fontsize=9)
    return _finish(figure, path)


def channel_weights_plot(
    weights: Mapping[str, ArrayLike], sort: bool = False, path: str | Path | None = None
) -> Figure:
    """Each method's weight per channel (the paper's Fig. 9 plots MI-CAM's along the channels),
    scaled by its largest magnitude so that methods share one axis; ``sort`` ranks them instead."""
    figure, axis = _subplots(figsize=(7, 3.2), dpi=100)
    for name, values in weights.items():
        w = _np(values).ravel()
        w = np.sort(w)[::-1] if sort else w
        scale = np.abs(w).max() or 1.0
        axis.plot(w / scale, label=name, linewidth=0.8 if not sort else 1.2, alpha=0.85)
    axis.axhline(0, color="gray", linewidth=0.5)
    axis.set_xlabel("channel rank" if sort else "channel")
    axis.set_ylabel("weight / max |weight|")
    axis.set_title("channel weights", fontsize=10)
    axis.legend(fontsize=8)
    return _finish(figure, path)


def deletion_insertion_plot(
    curves: Mapping[str, Mapping[str, Sequence[float]]], path: str | Path | None = None
) -> Figure:
    """Mean deletion and insertion curves per method; ``curves[method] = {"deletion": [...],
    "insertion": [...]}`` sampled evenly on [0, 1]. The legend gives each curve's AUC."""
    figure, axes = _subplots(1, 2, figsize=(10, 3.6), dpi=100)
    for axis, kind in zip(axes, ("deletion", "insertion"), strict=True):
        for name, pair in curves.items():
            values = _np(pair[kind])
            fractions = np.linspace(0, 1, len(values))
            area = float(auc(torch.as_tensor(values, dtype=torch.float64)))  # the metric's trapezoid rule
            style = "--" if name in ("centre-gaussian", "random") else "-"
            axis.plot(fractions, values, style, label=f"{name} ({area:.3f})", linewidth=1.2)
        axis.set_xlabel(f"fraction of pixels {'removed' if kind == 'deletion' else 'inserted'}")
        axis.set_ylabel("class probability")
        axis.set_title(f"{kind} (AUC in legend)", fontsize=10)
        axis.legend(fontsize=7)
    return _finish(figure, path)


def area_matched_plot(
    curves: Mapping[str, Mapping[str, Sequence[float]]], percentages: Sequence[float], path: str | Path | None = None
) -> Figure:
    """Area-matched AD and AI against the share of pixels kept, one curve per method;
    ``curves[method] = {"drop": [...], "increase": [...]}``, one mean per entry of ``percentages``."""
    figure, axes = _subplots(1, 2, figsize=(10, 3.6), dpi=100)
    for axis, kind in zip(axes, ("drop", "increase"), strict=True):
        for name, pair in curves.items():
            style = "--" if name in ("centre-gaussian", "random", "channel-sum", "mi-cam-shuffled") else "-"
            axis.plot(list(percentages), _np(pair[kind]), style, marker="o", markersize=3, label=name, linewidth=1.2)
        axis.set_xlabel("top p % of the pixels kept (ranked by the map)")
        axis.set_ylabel(f"Average {kind.capitalize()} (%) {'↓' if kind == 'drop' else '↑'}")
        axis.set_title(f"area-matched Average {kind.capitalize()}", fontsize=10)
        axis.legend(fontsize=7)
    return _finish(figure, path)


def paired_differences_plot(
    differences: Mapping[str, Mapping[str, Mapping[str, Mapping[str, float]]]],
    higher_is_better: Mapping[str, bool],
    names: Mapping[str, str] | None = None,
    focus: str = "mi-cam",
    path: str | Path | None = None,
) -> Figure:
    """``differences[model][baseline][metric] = {"mean", "half_width"}`` of (focus - baseline) per image:
    one panel per metric of ``higher_is_better``, a row per baseline, a marker and 95 % CI per model.
    Values are signed so that right of the zero line means ``focus`` is better on that metric."""
    metrics = list(higher_is_better)
    columns = min(3, len(metrics))
    rows = -(-len(metrics) // columns)
    figure, axes = _subplots(rows, columns, figsize=(4.2 * columns, 0.5 + 2.6 * rows), dpi=100, squeeze=False)
    models = list(differences)
    baselines = list(dict.fromkeys(b for model in models for b in differences[model]))
    step = 0.7 / max(len(models), 1)
    for index, metric in enumerate(metrics):
        axis = axes[index // columns][index % columns]
        sign = 1.0 if higher_is_better[metric] else -1.0
        for m, model in enumerate(models):
            for row, baseline in enumerate(baselines):
                cell = differences[model].get(baseline, {}).get(metric)
                if cell is None:
                    continue
                y = row + (m - (len(models) - 1) / 2) * step
                axis.errorbar(
                    sign * cell["mean"],
                    y,
                    xerr=cell["half_width"],
                    fmt="o",
                    markersize=3.5,
                    color=f"C{m}",
                    capsize=2,
                    linewidth=1,
                    label=model if row == 0 else None,
                )
        axis.axvline(0.0, color="0.4", linewidth=0.8)
        axis.set_yticks(range(len(baselines)), baselines, fontsize=8)
        axis.invert_yaxis()
        axis.set_title((names or {}).get(metric, metric), fontsize=10)
        axis.set_xlabel(f"{focus} better →", fontsize=8)
        axis.tick_params(axis="x", labelsize=7)
    for index in range(len(metrics), rows * columns):
        axes[index // columns][index % columns].set_visible(False)
    axes[0][0].legend(fontsize=7, loc="best")
    return _finish(figure, path)


__all__ = [
    "area_matched_plot",
    "channel_weights_plot",
    "comparison_grid",
    "counterfactual_weights_plot",
    "deletion_insertion_plot",
    "localization_view",
    "paired_differences_plot",
    "sanity_strip",
]
