"""The inference copy (batch norm folded into convolutions) and the channels-last layout: same function."""

from __future__ import annotations

import torch
from torch import nn

from micam.inference import foldable_pairs, in_place_activations, inference_copy, preferred_layout
from micam.metrics import class_scores


def _bn_model() -> nn.Module:
    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU()),
        nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8, affine=False), nn.ReLU6()),
        nn.Sequential(nn.Conv2d(8, 4, 1), nn.BatchNorm2d(4)),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 5),
    )
    for module in model.modules():  # running statistics far from the identity, so folding matters
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2.0)
            if module.affine:
                nn.init.uniform_(module.weight, 0.5, 1.5)
                nn.init.uniform_(module.bias, -0.5, 0.5)
    return model.train()  # the copy must be eval-mode whatever the original's mode


def test_inference_copy_folds_every_conv_bn_pair_and_computes_the_same_function():
    model = _bn_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = inference_copy(model)
    assert folded is not model and len(foldable_pairs(model)) == 3 and not foldable_pairs(folded)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules()) == 0
    assert isinstance(folded[0][1], nn.Identity)  # names kept: "0.1" is still there
    x = torch.randn(4, 3, 10, 10)
    with torch.no_grad():
        expected = model.eval()(x)
        torch.testing.assert_close(folded(x), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(folded(preferred_layout(x)), expected, rtol=1e-5, atol=1e-5)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # original untouched
    assert inference_copy(folded) is folded  # nothing left to fold: no second copy


def test_models_with_nothing_to_change_run_as_they_are_and_scores_match():
    plain = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5)
    )
    assert inference_copy(plain) is plain
    model = _bn_model().eval()
    x = torch.randn(6, 3, 10, 10)
    with torch.no_grad():
        expected = torch.softmax(model(x), dim=1)[torch.arange(6), torch.tensor([0, 1, 2, 3, 4, 0])]
    scores = class_scores(model, x, [0, 1, 2, 3, 4, 0], batch_size=4)
    torch.testing.assert_close(scores, expected, rtol=1e-5, atol=1e-6)


def test_preferred_layout_is_channels_last_on_cpu_only_for_4d_batches():
    x = torch.randn(2, 3, 5, 5)
    assert preferred_layout(x).is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(preferred_layout(x), x)
    vector = torch.randn(7)
    assert preferred_layout(vector) is vector


class _Branchy(nn.Module):
    """conv_a -> bn_a folds; conv_b's output also feeds a residual sum, so bn_b must stay."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.conv_a, self.bn_a = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.conv_b, self.bn_b = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)
        self.head = nn.Linear(4, 5)
        for norm in (self.bn_a, self.bn_b):
            norm.running_mean.uniform_(-1, 1)
            norm.running_var.uniform_(0.5, 2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.conv_b(torch.relu(self.bn_a(self.conv_a(x))))
        return self.head((self.bn_b(b) + b).mean(dim=(2, 3)))


class _DataDependent(nn.Module):
    """Untraceable (branches on a value): only Sequential neighbours are folded."""

    def __init__(self) -> None:
        super().__init__()
        self.body = _bn_model()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) if x.sum() > -1e9 else -self.body(x)


def test_traced_folding_follows_the_data_flow_and_falls_back_to_sequentials():
    model = _Branchy().eval()
    assert foldable_pairs(model) == [("conv_a", "bn_a")]
    folded = inference_copy(model)
    assert isinstance(folded.bn_a, nn.Identity) and isinstance(folded.bn_b, nn.BatchNorm2d)
    x = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-5, atol=1e-5)
    untraceable = _DataDependent().eval()
    assert [pair[1] for pair in foldable_pairs(untraceable)] == ["body.0.1", "body.1.1", "body.2.1"]
    with torch.no_grad():
        torch.testing.assert_close(inference_copy(untraceable)(x), untraceable(x))


def test_pairs_with_forward_hooks_are_left_alone():
    model = _Branchy().eval()
    handle = model.bn_a.register_forward_hook(lambda module, args, output: output * 2)
    try:
        assert foldable_pairs(model) == [] and inference_copy(model) is model
    finally:
        handle.remove()


class _SharedActivation(nn.Module):
    """One ReLU6 module called twice (as EfficientNet blocks do): after a conv, and after a sum whose
    input a residual still needs; a second ReLU6 reads a batch norm's output alone."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.conv, self.norm, self.head = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1)
        self.shared, self.alone = nn.ReLU6(), nn.ReLU6()
        self.norm.running_mean.uniform_(-1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.alone(self.norm(self.conv(x)))
        b = self.head(a)
        return self.shared(b) + self.shared(b * 3 + a) + b  # b is read again: not in place


def test_activations_run_in_place_only_where_nothing_else_reads_their_input():
    model = _SharedActivation().eval()
    assert in_place_activations(model) == ["alone"]  # "shared" reads b, which the sum reads too
    copy = inference_copy(model)
    assert copy.alone.inplace and not copy.shared.inplace and not model.alone.inplace  # original untouched
    x = torch.randn(2, 3, 6, 6) * 4
    with torch.no_grad():
        torch.testing.assert_close(copy(x), model(x), rtol=1e-5, atol=1e-5)
    hooked = _SharedActivation().eval()
    handle = hooked.norm.register_forward_hook(lambda module, args, output: None)  # a hook may keep the output
    try:
        assert in_place_activations(hooked) == []
    finally:
        handle.remove()
    block = nn.Sequential(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)), nn.ReLU6()).eval()
    assert in_place_activations(block) == ["1"]
    handle = block[0].register_forward_hook(lambda module, args, output: None)  # its output is the BN's
    try:
        assert in_place_activations(block) == []
    finally:
        handle.remove()


class _SamePadConv(nn.Conv2d):
    """A TF-"SAME" convolution as the EfficientNet-PyTorch family writes it: a ZeroPad2d module first."""

    def __init__(self, channels: int, kernel: int, pads: tuple[int, int, int, int], honours_padding: bool = True):
        super().__init__(channels, channels, kernel, groups=channels)
        self.static_padding, self.honours_padding = nn.ZeroPad2d(pads), honours_padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padding = self.padding if self.honours_padding else 0
        return nn.functional.conv2d(
            self.static_padding(x), self.weight, self.bias, self.stride, padding, 1, self.groups
        )


def test_symmetric_static_padding_moves_into_the_convolution_and_nothing_else_does():
    torch.manual_seed(6)
    model = nn.Sequential(
        _SamePadConv(3, 3, (1, 1, 1, 1)),  # symmetric: padded inside the convolution
        _SamePadConv(3, 5, (2, 2, 1, 1)),  # symmetric per side pair: rows 1, columns 2
        _SamePadConv(3, 3, (0, 1, 0, 1)),  # asymmetric (stride-2 "SAME"): kept
        _SamePadConv(3, 3, (1, 1, 1, 1), honours_padding=False),  # forward ignores padding: change undone
    ).eval()
    copy = inference_copy(model)
    assert [isinstance(m.static_padding, nn.ZeroPad2d) for m in copy] == [False, False, True, True]
    assert [tuple(m.padding) for m in copy] == [(1, 1), (1, 2), (0, 0), (0, 0)]
    x = torch.randn(2, 3, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(copy(x), model(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(copy(preferred_layout(x)), model(x), rtol=1e-5, atol=1e-5)


def test_the_copy_check_allows_tf32_rounding_on_cuda_only():
    from types import SimpleNamespace

    from micam.inference import OUTPUT_TOLERANCE, TF32_OUTPUT_TOLERANCE, check_tolerance

    cpu = torch.zeros(1)
    assert check_tolerance(cpu, OUTPUT_TOLERANCE) == OUTPUT_TOLERANCE
    cuda_like = SimpleNamespace(is_cuda=True, dtype=torch.float32)  # this machine has no GPU
    allowed = torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = True
        assert check_tolerance(cuda_like, OUTPUT_TOLERANCE) == TF32_OUTPUT_TOLERANCE  # type: ignore[arg-type]
        torch.backends.cudnn.allow_tf32 = False
        expected = TF32_OUTPUT_TOLERANCE if torch.backends.cuda.matmul.allow_tf32 else OUTPUT_TOLERANCE
        assert check_tolerance(cuda_like, OUTPUT_TOLERANCE) == expected  # type: ignore[arg-type]
        assert check_tolerance(SimpleNamespace(is_cuda=True, dtype=torch.float16), 1e-3) == 1e-3  # type: ignore[arg-type]
    finally:
        torch.backends.cudnn.allow_tf32 = allowed
