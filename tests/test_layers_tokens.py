"""Default layers of token and dense models (ViT, DeiT, Swin, ConvNeXt, segmentation, 1-D/3-D convs)
and the reshape transforms of token layouts. Random weights throughout."""

from __future__ import annotations

import warnings

import pytest
import torch
import torchvision
from torch import nn

from conftest import TokenModel
from micam import GradCAM
from micam.capture import (
    ChannelsLast,
    VitTokens,
    default_explanation_layer,
    default_target_layer,
    layer_names,
    resolve_layer,
)

timm = pytest.importorskip("timm")


# ----------------------------------------------------------------------------- reshape helpers
def test_vit_tokens_drop_the_prefix_tokens_and_lay_patches_out_row_major():
    tokens = torch.arange(2 * 8 * 4).reshape(2, 8, 4)  # (B, 2 prefix + 2x3 patches, D = 4)
    maps = VitTokens(prefix_tokens=2, grid=(2, 3))(tokens)
    assert maps.shape == (2, 4, 2, 3)
    for b in range(2):
        for c in range(4):
            for i in range(2):
                for j in range(3):
                    assert maps[b, c, i, j] == tokens[b, 2 + 3 * i + j, c]
    assert maps[1, 3, 1, 2] == 1 * 32 + 7 * 4 + 3


def test_vit_tokens_without_a_grid_need_a_square_and_a_wrong_grid_is_an_error():
    square = torch.arange(10 * 2).reshape(1, 10, 2).float()  # 1 class token + 3x3 patches
    maps = VitTokens(prefix_tokens=1)(square)
    assert maps.shape == (1, 2, 3, 3)
    assert maps[0, 1, 2, 0] == square[0, 1 + 6, 1]
    with pytest.raises(ValueError, match="not a square"):
        VitTokens(prefix_tokens=1)(torch.zeros(1, 7, 2))
    with pytest.raises(ValueError, match="do not fill the 2x2"):
        VitTokens(prefix_tokens=1, grid=(2, 2))(square)
    with pytest.raises(ValueError, match=r"\(B, tokens, D\)"):
        VitTokens()(torch.zeros(1, 2, 3, 3))
    assert repr(VitTokens(prefix_tokens=1, grid=(14, 14))) == "VitTokens(prefix_tokens=1, grid=(14, 14))"
    assert VitTokens(2, (14, 14)) == VitTokens(prefix_tokens=2, grid=(14, 14)) != VitTokens(1, (14, 14))


def test_channels_last_moves_channels_to_dim_1():
    x = torch.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)  # (B, H, W, C)
    maps = ChannelsLast()(x)
    assert maps.shape == (2, 5, 3, 4)
    for c in range(5):
        for i in range(3):
            for j in range(4):
                assert maps[1, c, i, j] == x[1, i, j, c]
    tokens = torch.arange(1 * 6 * 3).reshape(1, 6, 3)  # (B, N, C) on a 2x3 grid
    grid_maps = ChannelsLast(grid=(2, 3))(tokens)
    assert grid_maps.shape == (1, 3, 2, 3) and grid_maps[0, 2, 1, 0] == tokens[0, 3, 2]
    assert ChannelsLast()(torch.zeros(1, 16, 3)).shape == (1, 3, 4, 4)
    video = torch.rand(1, 2, 3, 4, 5)  # (B, T, H, W, C)
    torch.testing.assert_close(ChannelsLast()(video), video.permute(0, 4, 1, 2, 3))
    with pytest.raises(ValueError, match="not a square"):
        ChannelsLast()(torch.zeros(1, 6, 3))
    assert repr(ChannelsLast()) == "ChannelsLast()" and repr(ChannelsLast(grid=(2, 3))) == "ChannelsLast(grid=(2, 3))"


# ----------------------------------------------------------------------------- transformers
def _tv(name: str):  # type: ignore[no-untyped-def]
    return lambda: getattr(torchvision.models, name)(weights=None)


def _tv_vit() -> nn.Module:
    model = torchvision.models.vit_b_16(weights=None)
    nn.init.normal_(model.heads.head.weight, std=0.02)  # torchvision starts it at zero: no gradient
    return model


def _timm(name: str, **kwargs: object):  # type: ignore[no-untyped-def]
    return lambda: timm.create_model(name, pretrained=False, **kwargs)


TRANSFORMERS = [
    ("tv-vit_b_16", _tv_vit, "encoder.layers.encoder_layer_11.ln_1", VitTokens(1, (14, 14)), 768),
    ("timm-vit_tiny", _timm("vit_tiny_patch16_224"), "blocks.11.norm1", VitTokens(1, (14, 14)), 192),
    ("timm-deit_distilled", _timm("deit_tiny_distilled_patch16_224"), "blocks.11.norm1", VitTokens(2, (14, 14)), 192),
    ("tv-swin_t", _tv("swin_t"), "features.7.1.norm1", ChannelsLast(), 768),
    ("timm-swin_tiny", _timm("swin_tiny_patch4_window7_224"), "layers.3.blocks.1.norm1", ChannelsLast(), 768),
]


@pytest.mark.parametrize(
    ("build", "expected", "reshape", "channels"), [t[1:] for t in TRANSFORMERS], ids=[t[0] for t in TRANSFORMERS]
)
def test_transformers_default_to_the_last_blocks_first_norm_with_their_reshape(build, expected, reshape, channels):
    torch.manual_seed(0)
    model = build().eval()
    x = torch.rand(1, 3, 224, 224)
    name, module, transform = default_explanation_layer(model, x)
    assert (name, transform) == (expected, reshape)
    assert module is dict(model.named_modules())[expected]
    assert default_target_layer(model, x) == (name, module)
    # With random weights the map of one class may be all negative (all zero after the ReLU); the
    # map of minus that logit is then its mirror image, so one of the two is not constant.
    with GradCAM(model, target_layers=[name], reshape_transform=transform) as cam, warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        maps = cam(x, targets=0)
        assert cam.last_weights.shape == (1, channels)
        if float(maps.max()) == float(maps.min()):
            maps = cam(x, targets=[lambda logits: -logits[0]])
    assert maps.shape == (1, 224, 224) and torch.isfinite(maps).all()
    assert float(maps.max()) > float(maps.min())


def test_a_wrapped_vit_is_found_with_the_grid_of_its_patch_embedding():
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=64, depth=2)
    model = nn.Sequential(nn.Identity(), vit).eval()
    name, module, transform = default_explanation_layer(model, torch.rand(1, 3, 64, 64))
    assert name == "1.blocks.1.norm1" and module is vit.blocks[-1].norm1
    assert transform == VitTokens(prefix_tokens=1, grid=(4, 4))


class LinearTokenModel(TokenModel):
    """Tokens from a linear patch embedding: no convolution at all."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(3 * 16, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = x.unfold(2, 4, 4).unfold(3, 4, 4).permute(0, 2, 3, 1, 4, 5).flatten(3).flatten(1, 2)  # (B, N, 48)
        return self.head(self.block(self.embed(patches)).mean(dim=1))


@pytest.mark.parametrize("model", [TokenModel(), LinearTokenModel()], ids=["conv-patches", "linear-patches"])
def test_token_models_of_unknown_layout_say_to_pass_a_layer_and_a_reshape_transform(model):
    with pytest.raises(ValueError, match=r"works on tokens.*target_layers=.*reshape_transform"):
        default_explanation_layer(model.eval(), torch.rand(1, 3, 16, 16))


def test_a_patch_embedding_default_is_warned_about():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 4, stride=4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2)
    ).eval()
    with pytest.warns(UserWarning, match=r"'1' is a patch embedding"):
        name, _, transform = default_explanation_layer(model, torch.rand(1, 3, 16, 16))
    assert (name, transform) == ("1", None)


def test_a_classifier_head_default_is_warned_about():
    model = nn.Sequential(nn.Conv2d(3, 10, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    with pytest.warns(UserWarning, match=r"'0' is a classifier head"):
        assert default_explanation_layer(model, torch.rand(1, 3, 16, 16))[0] == "0"


# ----------------------------------------------------------------------------- dense CNNs
@pytest.mark.parametrize(
    ("build", "expected"),
    [(_tv("convnext_tiny"), "features.7"), (_timm("convnext_atto"), "stages.3")],
    ids=["tv-convnext_tiny", "timm-convnext_atto"],
)
def test_convnext_defaults_to_its_last_stage(build, expected):
    model = build().eval()
    name, _, transform = default_explanation_layer(model, torch.rand(1, 3, 64, 64))
    assert (name, transform) == (expected, None)
    with GradCAM(model, target_layers=[name]) as cam:
        maps = cam(torch.rand(1, 3, 64, 64))
    assert maps.shape == (1, 64, 64) and torch.isfinite(maps).all()


@pytest.mark.parametrize(
    ("builder", "expected"),
    [("deeplabv3_mobilenet_v3_large", "backbone.16"), ("fcn_resnet50", "backbone.layer4")],
)
def test_segmentation_models_default_to_the_backbones_last_stage(builder, expected):
    model = getattr(torchvision.models.segmentation, builder)(weights=None, weights_backbone=None).eval()
    name, module, _ = default_explanation_layer(model, torch.rand(1, 3, 128, 128))
    assert name == expected and module is dict(model.named_modules())[expected]


@pytest.mark.parametrize(
    ("build", "expected"),
    [(_timm("efficientnet_b0"), "bn2"), (_timm("mobilenetv3_large_100"), "blocks.6"), (_timm("resnet18"), "layer4.1")],
    ids=["timm-efficientnet_b0", "timm-mobilenetv3", "timm-resnet18"],
)
def test_timm_cnns_default_to_the_activated_output_of_their_last_block(build, expected):
    """timm's BatchNormAct2d (norm + activation in one module) belongs to the block of the conv it reads."""
    model = build().eval()
    assert default_explanation_layer(model, torch.rand(1, 3, 64, 64))[0] == expected


@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet50", "vgg16", "efficientnet_lite0", "mobilenet_v1"])
def test_the_shipped_models_keep_their_target_layers(name):
    from micam.models import load

    loaded = load(name, weights="random")
    assert default_target_layer(loaded.model, torch.rand(1, 3, 64, 64))[0] == loaded.target_layer_name


# ----------------------------------------------------------------------------- 1-D and 3-D convolutions
def test_a_3d_video_network_defaults_to_its_last_block():
    model = torchvision.models.video.r3d_18().eval()
    name, _, transform = default_explanation_layer(model, torch.rand(1, 3, 8, 64, 64))
    assert name in {"layer4", "layer4.1"} and transform is None


def test_a_1d_network_defaults_to_its_last_conv_block_and_names_list_conv1d_and_conv3d():
    model = nn.Sequential(
        nn.Conv1d(2, 8, 3),
        nn.BatchNorm1d(8),
        nn.ReLU(),
        nn.Conv1d(8, 8, 3),
        nn.InstanceNorm1d(8),
        nn.ReLU(),
        nn.Dropout(0.1),
        nn.AdaptiveAvgPool1d(1),
        nn.Flatten(),
        nn.Linear(8, 3),
    ).eval()
    assert default_explanation_layer(model, torch.rand(1, 2, 32))[:1] == ("6",)
    assert layer_names(model, conv_only=True) == ["0", "3"]
    with pytest.raises(ValueError, match=r"nearest valid names: 0, 3"):
        resolve_layer(model, "stem_block_zz")
    video = nn.Sequential(nn.Conv3d(3, 4, 3), nn.Conv3d(4, 4, 3))
    assert layer_names(video, conv_only=True) == ["0", "1"]
