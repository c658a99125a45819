"""The authors' algorithm, written from the paper's description to be timed beside MI-CAM: nearest
(block) upsampling of each map, a Python loop of ``sklearn.metrics.mutual_info_score`` per channel,
weighted sum, 11x11 sigma-7 blur, ReLU."""

from __future__ import annotations

import time
import warnings
from typing import Any, cast

import torch
from torch import Tensor, nn

from micam import MICAM
from micam.capture import record_activations
from micam.imaging import gaussian_blur

AUTHORS_LUMA = (0.2989, 0.5870, 0.1140)


def authors_weights(activations: Tensor, raw_images: Tensor) -> tuple[Tensor, float]:
    """The authors' per-channel loop, from the paper's description: nearest (block) upsampling of each
    map to the input size, the 8-bit gray their ``tf.image.rgb_to_grayscale`` gives of the 0-255 image
    (0.2989 R + 0.5870 G + 0.1140 B of the [0, 1] pixels, ``trunc(g * 255.5)``), then
    ``mutual_info_score(gray, map)`` per channel in Python. Returns (B, K) weights and the loop's time."""
    import numpy as np
    from sklearn.metrics import mutual_info_score

    warnings.filterwarnings("ignore", message="Clustering metrics expects discrete values")
    acts = activations.detach().float().cpu().numpy()
    raw = raw_images.detach().float().cpu()
    unit = torch.einsum("c,bchw->bhw", torch.tensor(AUTHORS_LUMA), raw * (1.0 / 255.0))
    grays = (unit * 255.5).clamp(0.0, 255.0).floor().numpy()
    batch, channels, h, w = acts.shape
    big_h, big_w = grays.shape[-2:]
    weights = np.zeros((batch, channels))
    start = time.perf_counter()
    for i in range(batch):
        gray = grays[i].ravel()
        for k in range(channels):
            block = np.repeat(np.repeat(acts[i, k], big_h // h, axis=0), big_w // w, axis=1)
            weights[i, k] = mutual_info_score(gray, block.ravel())
    return torch.from_numpy(weights), time.perf_counter() - start


def authors_map(model: nn.Module, layer: nn.Module, raw: Tensor) -> tuple[Tensor, float, Tensor]:
    """The whole authors' algorithm: forward, MI loop, weighted sum, blur, ReLU. Returns map, loop time
    and the weights."""
    with torch.no_grad():
        recording = record_activations(model, [layer], raw, track_gradients=False, stop_early=True)
    activations = recording.activations[0].detach()
    weights, loop_time = authors_weights(activations, raw)
    size = tuple(raw.shape[-2:])
    upsampled = torch.nn.functional.interpolate(activations, size=size, mode="nearest")
    cam = torch.einsum("bk,bkhw->bhw", weights.to(activations), upsampled)
    return gaussian_blur(cam, 11, 7.0).clamp(min=0), loop_time, weights


def authors_check(name: str, model: nn.Module, layer: nn.Module, raw: Tensor, theirs: Tensor) -> dict[str, Any]:
    """Same weights? ``MICAM(preset="authors")`` against the sklearn loop's weights on the same input."""
    cam = MICAM(model, [layer], preset="authors")
    cam(raw)
    ours = cast(Tensor, cam.last_weights).double().cpu()  # set by the call above
    relative = ((ours - theirs).abs() / theirs.abs().clamp(min=1e-12)).max().item()
    return {"model": name, "max_relative_difference": relative}
