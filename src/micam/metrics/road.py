"""ROAD, RemOve And Debias (Rong et al. 2022, "A Consistent and Efficient Evaluation Strategy for
Attribution Methods"): pixels are removed by noisy linear imputation instead of a constant, so the
removal leaves no sharp mask shape for the model to react to, most relevant first (MoRF) and least
relevant first (LeRF), at a set of percentages.

Imputation: each removed pixel becomes the weighted mean of its 8 neighbours inside the image (edge
neighbours 1/6, corner ones 1/12, renormalized over those inside); removed neighbours are unknowns too.
Per image this is a sparse symmetric positive definite system (a masked graph Laplacian: diagonally
dominant, and strictly so next to every kept pixel), one matrix for all channels. On the CPU it is
solved directly in float64 (SciPy's sparse LU with a symmetric minimum-degree ordering, the matrix
factored once for the channels), as the ROAD authors and pytorch-grad-cam solve it. On other devices,
and for images of more than ``DIRECT_MAX_PIXELS`` pixels, it is solved by Jacobi-preconditioned
conjugate gradients on the caller's device, whose matrix product is a 3 x 3 convolution and where every
system stops once its residual is at most ``tolerance`` times its right-hand side's norm (``solver``
picks either anywhere). Then noise
N(0, ``noise``²) is added to the removed pixels; the noise field is one (C, H, W) draw from a CPU
generator seeded with ``seed``, the same for every image, percentage and device, so a value never
depends on the batch it was computed in.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from micam.inference import InferenceRunner, inference_runner
from micam.metrics.deletion_insertion import _ranks
from micam.metrics.scores import ScoreKind, check_maps, class_scores
from micam.outputs import OutputSelector

ROAD_PERCENTAGES = (10, 20, 30, 40, 50, 60, 70, 80, 90)  # removed pixels, percent (the paper's sweep)
_EDGE, _CORNER = 1 / 6, 1 / 12  # neighbour weights (they sum to 1 inside the image)
_NEIGHBOURS = tuple((dy, dx, _CORNER if dy and dx else _EDGE) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx)
Solver = Literal["auto", "direct", "cg"]
SOLVERS = ("auto", "direct", "cg")
# "auto" factors directly up to this many pixels per image; the factor's fill grows faster than the
# image (a 2-D grid's LU), so larger images are solved by conjugate gradients, whose memory is linear.
DIRECT_MAX_PIXELS = 512 * 512


def noisy_linear_imputation(
    images: Tensor,
    removed: Tensor,
    noise: float = 0.01,
    seed: int = 0,
    tolerance: float = 1e-6,
    max_iterations: int = 10_000,
    solver: Solver = "auto",
) -> Tensor:
    """``images`` (B, C, H, W) whose ``removed`` (B, H, W) pixels are linearly imputed from the rest,
    plus noise of standard deviation ``noise`` (0: none). Every image must keep at least one pixel.
    ``solver``: "direct" (sparse LU on the CPU), "cg" (conjugate gradients on the images' device, to
    ``tolerance`` within ``max_iterations``) or "auto" (direct for CPU images of at most
    ``DIRECT_MAX_PIXELS`` pixels, else cg)."""
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    if removed.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(f"removed must be (B, H, W) = {(images.shape[0], *images.shape[2:])}, got {removed.shape}")
    removed = removed.to(images.device, torch.bool)
    if bool(removed.flatten(1).all(dim=1).any()):
        raise ValueError("every image must keep at least one pixel to impute the others from")
    b, c, h, w = images.shape
    direct = images.device.type == "cpu" and h * w <= DIRECT_MAX_PIXELS
    if solver == "direct" or (solver == "auto" and direct):
        solved = _solve_direct(images.detach().cpu().to(torch.float64), removed.cpu()).to(images.device)
    else:
        values = images.detach().to(torch.float64).reshape(b * c, 1, h, w)
        unknown = removed[:, None].expand(b, c, h, w).reshape(b * c, 1, h, w).to(torch.float64)
        solved = _solve(values, unknown, tolerance, max_iterations).reshape(b, c, h, w)
    if noise:
        generator = torch.Generator().manual_seed(seed)
        field = torch.randn((c, h, w), generator=generator, dtype=torch.float64).to(images.device)
        solved = solved + noise * field
    return torch.where(removed[:, None], solved.to(images.dtype), images)


def _solve_direct(values: Tensor, removed: Tensor) -> Tensor:
    """(B, C, H, W) float64 CPU ``values`` with their ``removed`` (B, H, W) pixels replaced by the exact
    solution, the images' systems factored in parallel (SciPy's LU releases the GIL)."""
    workers = max(1, min(torch.get_num_threads(), values.shape[0]))
    if workers == 1:
        return torch.stack([_solve_one(v, r) for v, r in zip(values, removed, strict=True)])
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return torch.stack(list(pool.map(_solve_one, values, removed)))


def _solve_one(values: Tensor, removed: Tensor) -> Tensor:
    """One (C, H, W) image: row i of its system is degree_i x_i - sum over removed neighbours j of
    w_ij x_j = sum over kept neighbours j of w_ij v_j; one factorization serves every channel."""
    from scipy.sparse import csc_matrix
    from scipy.sparse.linalg import splu

    c, h, w = values.shape
    cells = removed.flatten().nonzero().squeeze(1)  # flat positions of the unknowns
    count = len(cells)
    if count == 0:
        return values
    number = torch.full((h * w,), -1, dtype=torch.long)
    number[cells] = torch.arange(count)
    y, x = cells // w, cells % w
    flat = values.reshape(c, h * w)
    degree = torch.zeros(count, dtype=torch.float64)
    rhs = torch.zeros(count, c, dtype=torch.float64)
    rows, columns, entries = [torch.arange(count)], [torch.arange(count)], [degree]
    for dy, dx, weight in _NEIGHBOURS:
        inside = ((y + dy >= 0) & (y + dy < h) & (x + dx >= 0) & (x + dx < w)).nonzero().squeeze(1)
        neighbour = (y[inside] + dy) * w + x[inside] + dx
        degree[inside] += weight
        unknown = number[neighbour] >= 0
        rows.append(inside[unknown])
        columns.append(number[neighbour[unknown]])
        entries.append(torch.full((int(unknown.sum()),), -weight, dtype=torch.float64))
        rhs.index_add_(0, inside[~unknown], weight * flat[:, neighbour[~unknown]].T)
    matrix = csc_matrix(
        (torch.cat(entries).numpy(), (torch.cat(rows).numpy(), torch.cat(columns).numpy())), shape=(count, count)
    )
    factor = splu(matrix, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
    solved = flat.clone()
    solved[:, cells] = torch.from_numpy(factor.solve(rhs.numpy())).T
    return solved.reshape(c, h, w)


def _neighbour_sum(x: Tensor) -> Tensor:
    """Weighted sum of each pixel's neighbours inside the image, (N, 1, H, W)."""
    kernel = x.new_tensor([[_CORNER, _EDGE, _CORNER], [_EDGE, 0.0, _EDGE], [_CORNER, _EDGE, _CORNER]])
    return F.conv2d(x, kernel.view(1, 1, 3, 3), padding=1)


def _solve(values: Tensor, unknown: Tensor, tolerance: float, max_iterations: int) -> Tensor:
    """Values of the ``unknown`` pixels (0/1, (N, 1, H, W)) that make each the weighted mean of its
    neighbours, by preconditioned conjugate gradients; each system stops on its own residual."""
    degree = _neighbour_sum(torch.ones_like(values[:1]))  # total neighbour weight of each pixel

    def apply(x: Tensor) -> Tensor:
        return unknown * (degree * x - _neighbour_sum(unknown * x))

    def dot(x: Tensor, y: Tensor) -> Tensor:
        return (x * y).sum(dim=(1, 2, 3), keepdim=True)

    known = 1 - unknown
    rhs = unknown * _neighbour_sum(known * values)
    x = unknown * _first_guess(values, known, tolerance, max_iterations)
    residual = rhs - apply(x)
    limit = tolerance * dot(rhs, rhs).sqrt()
    z = residual / degree
    direction = z
    rz = dot(residual, z)
    for _ in range(max_iterations):
        active = dot(residual, residual).sqrt() > limit
        if not bool(active.any()):
            break
        product = apply(direction)
        curvature = dot(direction, product)
        alpha = torch.where(active & (curvature > 0), rz / curvature.clamp(min=1e-300), 0.0)
        x = x + alpha * direction
        residual = residual - alpha * product
        z = residual / degree
        rz_next = dot(residual, z)
        beta = torch.where(active & (rz > 0), rz_next / rz.clamp(min=1e-300), 0.0)
        direction = z + beta * direction
        rz = torch.where(active, rz_next, rz)
    else:
        if bool((dot(residual, residual).sqrt() > limit).any()):
            warnings.warn(
                f"linear imputation stopped after {max_iterations} iterations above its tolerance",
                RuntimeWarning,
                stacklevel=2,
            )
    return torch.where(unknown.bool(), x, values)


def _first_guess(values: Tensor, known: Tensor, tolerance: float, max_iterations: int) -> Tensor:
    """The same problem solved on a grid half as fine (a coarse pixel is kept where any of its 2 x 2
    pixels is, with their mean), recursively, and upsampled: conjugate gradients then only has to
    remove the fine detail, not carry values across large removed regions pixel by pixel."""
    h, w = values.shape[-2:]
    if min(h, w) < 16:
        mean = (known * values).sum(dim=(1, 2, 3), keepdim=True) / known.sum(dim=(1, 2, 3), keepdim=True)
        return mean.expand_as(values)
    share = F.avg_pool2d(known, 2, ceil_mode=True)
    coarse_values = F.avg_pool2d(known * values, 2, ceil_mode=True) / share.clamp(min=1e-12)
    coarse = _solve(coarse_values, (share == 0).to(values.dtype), tolerance, max_iterations)
    return F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)


def removal_counts(percentages: Sequence[float], pixels: int, allow_all: bool = False) -> list[int]:
    """How many of ``pixels`` pixels ``percentages`` percent are (rounded half up)."""
    bad = [p for p in percentages if not (math.isfinite(p) and p >= 0.0 and (p <= 100 if allow_all else p < 100))]
    if bad or not percentages:
        raise ValueError(f"percentages must be in [0, {'100]' if allow_all else '100)'}, got {list(percentages)}")
    return [math.floor(p * pixels / 100 + 0.5) for p in percentages]


def road(
    model: nn.Module | InferenceRunner,
    images: Tensor,
    maps: Tensor,
    classes: Sequence[int] | Tensor,
    percentages: Sequence[float] = ROAD_PERCENTAGES,
    noise: float = 0.01,
    seed: int = 0,
    score: ScoreKind = "probability",
    batch_size: int = 64,
    output_selector: OutputSelector = None,
    tolerance: float = 1e-6,
    max_iterations: int = 10_000,
    solver: Solver = "auto",
) -> dict[str, Tensor]:
    """Per-image ROAD curves (B, P): the class score after imputing the top ``percentages`` % pixels
    (MoRF, lower is better) or the bottom ones (LeRF, higher is better), their means over P (B,) and
    ``combined`` = (LeRF - MoRF) / 2, pytorch-grad-cam's ROADCombined. Ties in the map are broken in
    raster order. ``batch_size`` (image, percentage) variants are imputed and scored at a time;
    ``solver``, ``tolerance`` and ``max_iterations`` as in ``noisy_linear_imputation``."""
    check_maps(images, maps)
    n, (h, w) = images.shape[0], images.shape[-2:]
    counts = torch.tensor(removal_counts(percentages, h * w), device=images.device)
    classes = torch.as_tensor(classes, device=images.device).long().reshape(-1)
    runner = inference_runner(model)
    full = class_scores(runner, images, classes, score, batch_size, output_selector)
    curves = {}
    for order, descending in (("morf", True), ("lerf", False)):
        ranks = _ranks(maps, descending=descending)
        pairs = torch.cartesian_prod(
            torch.arange(n, device=images.device), torch.arange(len(counts), device=images.device)
        )
        parts = []
        for chunk in pairs.view(-1, 2).split(batch_size):
            image_index, step_index = chunk[:, 0], chunk[:, 1]
            removed = ranks[image_index] < counts[step_index][:, None, None]
            imputed = noisy_linear_imputation(
                images[image_index], removed, noise, seed, tolerance, max_iterations, solver
            )
            parts.append(class_scores(runner, imputed, classes[image_index], score, batch_size, output_selector))
        curves[order] = torch.cat(parts).view(n, len(counts)) if parts else full.new_zeros(n, len(counts))
    morf, lerf = curves["morf"].mean(dim=1), curves["lerf"].mean(dim=1)
    return {
        "morf_curve": curves["morf"],
        "lerf_curve": curves["lerf"],
        "morf": morf,
        "lerf": lerf,
        "combined": (lerf - morf) / 2,
        "score_full": full,
    }
