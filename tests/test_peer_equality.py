"""Our baselines equal pytorch-grad-cam's on MobileNetV2 with its real ImageNet weights and real photos."""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_grad_cam as peer
import torch
import torch.nn.functional as F
from PIL import Image
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection
from sklearn.metrics import mutual_info_score

from conftest import EXAMPLES, SHARED_DATA, needs_mobilenet_weights
from micam import MICAM, EigenCAM, GradCAM, GradCAMPlusPlus, XGradCAM, models

pytestmark = needs_mobilenet_weights
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def mobilenet():
    return models.load("mobilenet_v2")


@pytest.fixture(scope="module")
def photos(mobilenet):
    paths = [EXAMPLES / "chelsea.png", EXAMPLES / "coffee.png"]
    extra = SHARED_DATA / "photos" / "darknet" / "dog.jpg"
    if extra.exists():
        paths.append(extra)
    return torch.stack([mobilenet.preprocess(Image.open(p)) for p in paths])


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [(GradCAM, peer.GradCAM), (GradCAMPlusPlus, peer.GradCAMPlusPlus), (XGradCAM, peer.XGradCAM)],
)
@pytest.mark.parametrize("targets", [None, [285, 967, 207]])
def test_gradient_methods_equal_pytorch_grad_cam(mobilenet, photos, ours, theirs, targets):
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    targets = None if targets is None else targets[: len(photos)]
    with ours(mobilenet.model, target_layers=[mobilenet.target_layer]) as cam:
        mine = cam(photos, targets=targets).numpy()
    peer_targets = None if targets is None else [ClassifierOutputTarget(t) for t in targets]
    with theirs(mobilenet.model, target_layers=[mobilenet.target_layer]) as cam:
        reference = cam(photos, targets=peer_targets)
    assert np.abs(mine - reference).max() < TOLERANCE


def both_orientations(projection: np.ndarray) -> list[np.ndarray]:
    """The peer's Eigen-CAM map for a (1, h, w) projection and for its sign-flipped twin."""
    return [scale_cam_image(scale_cam_image(np.maximum(s * projection, 0), (224, 224)))[0] for s in (1, -1)]


def test_eigen_cam_equals_pytorch_grad_cam_up_to_the_svd_sign(mobilenet, photos):
    with EigenCAM(mobilenet.model, target_layers=[mobilenet.target_layer]) as cam:
        mine = cam(photos).numpy()
    activations = {}
    handle = mobilenet.target_layer.register_forward_hook(lambda m, i, o: activations.setdefault("a", o.detach()))
    with torch.no_grad():
        mobilenet.model(photos)
    handle.remove()
    projection = get_2d_projection(activations["a"].numpy())  # the peer's own projection (sign from LAPACK)
    for i in range(len(photos)):
        candidates = both_orientations(projection[i : i + 1])
        assert min(np.abs(mine[i] - c).max() for c in candidates) < TOLERANCE
    with peer.EigenCAM(mobilenet.model, target_layers=[mobilenet.target_layer]) as cam:
        reference = cam(photos, targets=None)
    # The peer's own maps are one of the two orientations reconstructed above.
    for i in range(len(photos)):
        candidates = both_orientations(projection[i : i + 1])
        assert min(np.abs(reference[i] - c).max() for c in candidates) < TOLERANCE


def test_authors_preset_weights_equal_their_per_channel_sklearn_loop(mobilenet, photos):
    """preset="authors": raw 0-255 RGB input, nearest x32 upsampling, 8-bit gray (luma .2989/.5870/.1140),
    sklearn MI."""
    mean = torch.tensor(mobilenet.mean).view(1, 3, 1, 1)
    std = torch.tensor(mobilenet.std).view(1, 3, 1, 1)
    pixels = ((photos[:1] * std + mean) * 255).round()
    with MICAM(mobilenet.model, target_layers=[mobilenet.target_layer], preset="authors") as cam:
        cam(pixels)
        weights = cam.last_weights[0].numpy()
    with torch.no_grad():
        activations = mobilenet.model.features(pixels)
    up = F.interpolate(activations, size=(224, 224), mode="nearest")[0].flatten(1).numpy()
    # their 8-bit gray: tf.image.rgb_to_grayscale on the uint8 image, trunc(luma of the [0, 1] pixels x 255.5)
    unit = torch.einsum("c,bchw->bhw", torch.tensor([0.2989, 0.5870, 0.1140]), pixels * (1.0 / 255.0))[0]
    gray = (unit * 255.5).clamp(0, 255).floor().flatten().numpy()
    assert len(np.unique(gray)) <= 256
    channels = range(0, 1280, 40)  # 32 channels keep the sklearn loop short
    expected = np.array([mutual_info_score(gray, up[k]) for k in channels])
    np.testing.assert_allclose(weights[list(channels)], expected, rtol=1e-6, atol=1e-12)
