"""Reshape transforms that turn token-shaped activations into (B, K, h, w) maps.

A transformer layer's output is not a (B, K, h, w) feature map: a ViT/DeiT block returns
(B, P + N, D) tokens (P prefix tokens: class, distillation, registers; N patch tokens in row-major
order over an h x w patch grid) and a Swin block returns (B, H, W, C) channels-last maps. Pass one
of these callables as ``reshape_transform=`` to any CAM method; ``default_explanation_layer`` picks
them for the models it recognises.
"""

from __future__ import annotations

import math

from torch import Tensor

Grid = tuple[int, int]


def _grid_for(tokens: int, grid: Grid | None, what: str) -> Grid:
    """The (h, w) patch grid of ``tokens`` patch tokens: ``grid`` when given, else a square."""
    if grid is not None:
        if grid[0] * grid[1] != tokens:
            raise ValueError(
                f"{what}: {tokens} patch tokens do not fill the {grid[0]}x{grid[1]} patch grid; the input size "
                "differs from the one the grid was made for: pass grid=(h, w) for this input size"
            )
        return grid
    side = math.isqrt(tokens)
    if side * side != tokens:
        raise ValueError(
            f"{what}: {tokens} patch tokens are not a square grid and no grid is known; "
            "pass grid=(h, w) (the input size divided by the patch size)"
        )
    return side, side


def _check_grid(grid: Grid | None) -> Grid | None:
    if grid is None:
        return None
    h, w = (int(v) for v in grid)
    if h < 1 or w < 1:
        raise ValueError(f"grid must be two positive sizes (h, w), got {grid}")
    return h, w


class VitTokens:
    """(B, P + N, D) ViT/DeiT tokens -> (B, D, h, w): drops the P prefix tokens and lays the N patch
    tokens out row-major on the h x w patch grid (``grid``, or a square when None)."""

    def __init__(self, prefix_tokens: int = 1, grid: Grid | None = None) -> None:
        if prefix_tokens < 0:
            raise ValueError(f"prefix_tokens must be >= 0, got {prefix_tokens}")
        self.prefix_tokens = int(prefix_tokens)
        self.grid = _check_grid(grid)

    def __call__(self, tokens: Tensor) -> Tensor:
        if tokens.dim() != 3:
            raise ValueError(f"{self!r} expects (B, tokens, D) activations, got shape {tuple(tokens.shape)}")
        batch, count, dim = tokens.shape
        if count <= self.prefix_tokens:
            raise ValueError(f"{self!r} got {count} tokens: none left after the {self.prefix_tokens} prefix tokens")
        h, w = _grid_for(count - self.prefix_tokens, self.grid, repr(self))
        patches = tokens[:, self.prefix_tokens :, :]
        return patches.transpose(1, 2).reshape(batch, dim, h, w)

    def __repr__(self) -> str:
        return f"VitTokens(prefix_tokens={self.prefix_tokens}, grid={self.grid})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VitTokens):
            return NotImplemented
        return (self.prefix_tokens, self.grid) == (other.prefix_tokens, other.grid)

    def __hash__(self) -> int:
        return hash((VitTokens, self.prefix_tokens, self.grid))


class ChannelsLast:
    """Channels-last activations -> channels-first maps: (B, H, W, C) -> (B, C, H, W) (any rank >= 4,
    e.g. (B, T, H, W, C) -> (B, C, T, H, W)), and (B, N, C) tokens -> (B, C, h, w) on ``grid`` (or
    a square when None), as Swin blocks produce."""

    def __init__(self, grid: Grid | None = None) -> None:
        self.grid = _check_grid(grid)

    def __call__(self, activations: Tensor) -> Tensor:
        if activations.dim() == 3:
            batch, count, channels = activations.shape
            h, w = _grid_for(count, self.grid, repr(self))
            return activations.transpose(1, 2).reshape(batch, channels, h, w)
        if activations.dim() < 3:
            raise ValueError(
                f"{self!r} expects (B, H, W, C) or (B, N, C) activations, got shape {tuple(activations.shape)}"
            )
        return activations.movedim(-1, 1)

    def __repr__(self) -> str:
        return "ChannelsLast()" if self.grid is None else f"ChannelsLast(grid={self.grid})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ChannelsLast):
            return NotImplemented
        return self.grid == other.grid

    def __hash__(self) -> int:
        return hash((ChannelsLast, self.grid))
