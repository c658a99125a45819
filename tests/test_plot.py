"""Each figure function draws a non-empty PNG of the expected size from real maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import EXAMPLES, needs_mobilenet_weights
from micam import models, plot
from micam.methods import MICAM, GradCAM
from micam.metrics import counterfactual_weights, set_box
from micam.plot.overlay import restore_image


@pytest.fixture(scope="module")
def explained():
    loaded = models.load("mobilenet_v2")
    photos = [Image.open(EXAMPLES / name).convert("RGB") for name in ("chelsea.png", "coffee.png")]
    x = torch.stack([loaded.preprocess(p) for p in photos])
    maps, weights = {}, {}
    for name, cls in (("grad-cam", GradCAM), ("mi-cam", MICAM)):
        with cls(loaded.model, [loaded.target_layer]) as cam:
            maps[name] = cam(x)
            weights[name] = cam.last_weights[0]
    images = [restore_image(t, loaded.mean, loaded.std) for t in x]
    return loaded, x, images, maps, weights


def _check_png(path, size):
    with Image.open(path) as image:
        assert image.size == size
        pixels = np.asarray(image.convert("L"), dtype=np.float64)
    assert pixels.std() > 10  # not blank


@needs_mobilenet_weights
def test_every_figure_is_a_non_empty_png_of_the_right_size(explained, tmp_path):
    loaded, x, images, maps, weights = explained
    plot.comparison_grid(images, maps, ["Egyptian cat", "espresso"], path=tmp_path / "grid.png")
    _check_png(tmp_path / "grid.png", (600, 430))  # 3 columns x 2.0 in, 2 rows x 2.0 in + 0.3, at 100 dpi
    plot.localization_view(images[0], maps["mi-cam"][0], [(40, 30, 200, 210)], "cat", path=tmp_path / "loc.png")
    _check_png(tmp_path / "loc.png", (320, 340))
    with MICAM(loaded.model, [loaded.target_layer]) as cam:
        change = counterfactual_weights(cam, x[:1], set_box((40, 30, 200, 210)))
    plot.counterfactual_weights_plot(
        change["actual_weights"][0],
        change["counterfactual_weights"][0],
        "mi-cam",
        "box blacked out",
        path=tmp_path / "cf.png",
    )
    _check_png(tmp_path / "cf.png", (900, 320))
    strip = [maps["mi-cam"][0], maps["grad-cam"][0], torch.rand(224, 224)]
    plot.sanity_strip(images[0], strip, ["original", "head", "all"], "mi-cam", path=tmp_path / "sanity.png")
    _check_png(tmp_path / "sanity.png", (480, 200))
    plot.channel_weights_plot(weights, path=tmp_path / "weights.png")
    _check_png(tmp_path / "weights.png", (700, 320))
    curves = {"mi-cam": {"deletion": [1.0, 0.4, 0.1], "insertion": [0.0, 0.6, 1.0]}}
    figure = plot.deletion_insertion_plot(curves, path=tmp_path / "curves.png")
    _check_png(tmp_path / "curves.png", (1000, 360))
    legend = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert legend == ["mi-cam (0.475)"]  # trapezoid area of (1, .4, .1) on [0, 1]


def test_comparison_grid_needs_images():
    with pytest.raises(ValueError, match="at least one image"):
        plot.comparison_grid([], {})


def test_paired_differences_plot_signs_each_metric_so_that_right_is_better(tmp_path):
    differences = {
        "model-a": {
            "grad-cam": {
                "insertion_auc": {"mean": 0.02, "half_width": 0.01, "n": 9},
                "deletion_auc": {"mean": 0.03, "half_width": 0.01, "n": 9},
            }
        },
        "model-b": {"grad-cam": {"insertion_auc": {"mean": -0.05, "half_width": 0.02, "n": 9}}},
    }
    directions = {"insertion_auc": True, "deletion_auc": False}
    figure = plot.paired_differences_plot(differences, directions, path=tmp_path / "paired.png")
    assert (tmp_path / "paired.png").stat().st_size > 0
    insertion, deletion = figure.axes[:2]
    points = [float(bars.lines[0].get_xdata()[0]) for bars in insertion.containers]  # each errorbar's marker
    assert sorted(points) == [-0.05, 0.02]  # higher is better: as it is
    points = [float(bars.lines[0].get_xdata()[0]) for bars in deletion.containers]
    assert points == [-0.03]  # lower is better: MI-CAM's higher deletion AUC plots left of zero
    assert [label.get_text() for label in insertion.get_yticklabels()] == ["grad-cam"]
