"""The Triton kernels of the binned estimator (the histogram one and the tensor-core one), run by
Triton's CPU interpreter (no GPU needed): the MI of their own bilinear expression (ATen's CPU one; the
interpreter rounds its fused multiply-adds twice, and so does the reference here) to 1e-12, for both
upsamplings, both binned estimators and awkward maps; and the chunked route's MI where rounding cannot
differ (an 8x upsampling: exact weights).

The interpreter divides exactly whatever the code says, so two more tests look at what a GPU would run:
the kernels' source has no plain ``/``, and the kernels compiled for sm_90 (Triton's own ptxas, no GPU)
divide floats only with correct rounding.

Triton reads TRITON_INTERPRET when it is first imported, so the cases run in one subprocess started
with it set (``interpreted_cases``), and the tests check what that process reports.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from micam.estimators import mutual_information, upsampled_mutual_information
from micam.estimators.fused import _plan

CASES = [(mode, estimator, bins) for mode in ("bilinear", "nearest") for estimator, bins in
         (("binned", 32), ("binned", 2), ("normalized", 64))]  # fmt: skip
KERNELS = ("histogram", "dot")  # micam.estimators.fused._GPU_KERNEL; "dot" serves 16-64 bins


def awkward_maps() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    maps = torch.rand(2, 6, 7, 5, generator=generator) * 3
    maps[0, 1] = 0.5  # constant: MI 0
    maps[0, 2] = torch.rand(7, 5, generator=generator) * 1e-39  # a subnormal span: bins by division
    maps[1, 0] = torch.randint(0, 3, (7, 5), generator=generator).float()  # ties on bin edges
    maps[1, 1] = torch.rand(7, 5, generator=generator) * 1e6 - 5e5  # negative values, a large range
    return maps


def gray_image() -> torch.Tensor:
    gray = torch.rand(2, 50, 37, generator=torch.Generator().manual_seed(1))  # 1,850 pixels: a partial block
    gray[1, :, :5] = 0.0
    return gray


def expression_mi(maps: torch.Tensor, gray: torch.Tensor, mode: str, estimator: str, bins: int) -> torch.Tensor:
    """MI of the maps upsampled by the kernel's expression, one rounding per operation, then binned and
    counted by the straightforward code."""
    h, w = maps.shape[-2:]
    rows0, rows1, row_w0, row_w1, cols0, cols1, col_w0, col_w1 = (
        torch.from_numpy(p) for p in _plan(h, w, *gray.shape[1:], mode)
    )
    if mode == "nearest":
        row_w0, col_w0 = torch.ones_like(row_w0), torch.ones_like(col_w0)
    r0, r1, rw0, rw1 = rows0[:, None], rows1[:, None], row_w0[:, None], row_w1[:, None]
    top = col_w0 * maps[..., r0, cols0] + col_w1 * maps[..., r0, cols1]
    bottom = col_w0 * maps[..., r1, cols0] + col_w1 * maps[..., r1, cols1]
    values = rw0 * top + rw1 * bottom
    return mutual_information(values.flatten(2), gray.flatten(1)[:, None], estimator, bins)


def _error(call: Any) -> str:
    try:
        call()
    except Exception as error:  # reported to the test process
        return f"{type(error).__name__}: {error}"
    return "no error"


def run_cases() -> dict[str, Any]:
    """Run in the interpreted subprocess: every case's kernel MI and chunked MI, and the refusals."""
    from micam.estimators import fused

    warnings.simplefilter("ignore", RuntimeWarning)  # numpy evaluates both sides of each tl.where
    maps, gray = awkward_maps(), gray_image()
    found: dict[str, Any] = {}
    square = torch.rand(2, 56, 56, generator=torch.Generator().manual_seed(2))
    square_maps = awkward_maps()[..., :5, :].repeat(1, 1, 2, 2)[..., :7, :7]
    flat = torch.full((1, 20, 20), 0.3)
    for name in KERNELS:
        fused._GPU_KERNEL = name
        for mode, estimator, bins in CASES:
            kernel = upsampled_mutual_information(maps, gray, mode, estimator, bins, route="gpu")
            expected = expression_mi(maps, gray, mode, estimator, bins)
            found[f"{name} {mode}-{estimator}-{bins}"] = {"kernel": kernel.tolist(), "expected": expected.tolist()}
        for mode in ("bilinear", "nearest"):
            kernel = upsampled_mutual_information(square_maps, square, mode, route="gpu")
            chunked = upsampled_mutual_information(square_maps, square, mode, route="chunked")
            found[f"{name} 8x {mode}"] = {"kernel": kernel.tolist(), "expected": chunked.tolist()}
        found[f"{name} constant gray"] = upsampled_mutual_information(maps[:1], flat, route="gpu").tolist()
    found["bins 33"] = _error(lambda: upsampled_mutual_information(maps, gray, "bilinear", "binned", 33, route="gpu"))
    found["reference"] = _error(lambda: upsampled_mutual_information(maps, gray, "nearest", "reference", route="gpu"))
    found["float64"] = _error(lambda: upsampled_mutual_information(maps.double(), gray.double(), route="gpu"))
    return found


@pytest.fixture(scope="module")
def interpreted_cases() -> dict[str, Any]:
    pytest.importorskip("triton")
    here = Path(__file__).parent
    code = f"import json, sys; sys.path.insert(0, {str(here)!r}); import test_gpu_kernel as t; "
    code += "print(json.dumps(t.run_cases()))"
    environment = os.environ | {"TRITON_INTERPRET": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", KERNELS)
@pytest.mark.parametrize("case", [f"{mode}-{estimator}-{bins}" for mode, estimator, bins in CASES])
def test_gpu_kernel_equals_its_expression_counted_straightforwardly(interpreted_cases, name, case):
    found = interpreted_cases[f"{name} {case}"]
    kernel, expected = torch.tensor(found["kernel"]), torch.tensor(found["expected"])
    torch.testing.assert_close(kernel, expected, rtol=0, atol=1e-12)
    assert kernel[1, 0] > 0  # the map with ties


@pytest.mark.parametrize("name", KERNELS)
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_gpu_kernel_equals_the_chunked_route_where_aten_rounds_alike(interpreted_cases, name, mode):
    found = interpreted_cases[f"{name} 8x {mode}"]
    kernel, chunked = torch.tensor(found["kernel"]), torch.tensor(found["expected"])
    torch.testing.assert_close(kernel, chunked, rtol=0, atol=1e-12)
    assert kernel[0, 1] == 0  # a constant map stays constant when the weights are exact


@pytest.mark.parametrize("name", KERNELS)
def test_gpu_kernel_of_a_constant_gray_image_is_zero(interpreted_cases, name):
    assert interpreted_cases[f"{name} constant gray"] == [[0.0] * 6]


def test_gpu_kernels_divide_with_correct_rounding():
    """Triton compiles a float ``/`` to an approximate division on NVIDIA GPUs (an ulp off ``bins / span``
    moved pixels across bin edges on an H100), and its interpreter divides exactly, so no run here can
    see it: the kernels' source must use ``tl.math.div_rn`` for every division."""
    source = Path(micam_triton_source()).read_text()
    divisions = [node.lineno for node in ast.walk(ast.parse(source))
                 if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div)]  # fmt: skip
    assert divisions == [], f"plain '/' in micam/estimators/_triton.py at lines {divisions}: use tl.math.div_rn"
    assert "tl.math.div_rn" in source


# Argument types as ``micam.estimators.fused.gpu_binned`` passes them: maps, gray codes, the plan (a tuple:
# int64 indices, float32 weights), the outputs, then channels, h, w, big_w, n.
KERNEL_TYPES = ["*fp32", "*i32", ("*i64", "*i64", "*fp32", "*fp32", "*i64", "*i64", "*fp32", "*fp32"),
                "*fp64", "*fp64", "*i8", "i32", "i32", "i32", "i32", "i32"]  # fmt: skip


COMPILED = [("binned_map_sums", {"BINS": 32, "BLOCK": 1024}),
            ("binned_map_sums_dot", {"BINS": 32, "MAPS": 4, "BLOCK": 64})]  # fmt: skip


@pytest.mark.parametrize(("kernel", "constants"), COMPILED)
def test_gpu_kernels_compile_for_hopper_with_exact_float_division(kernel, constants):
    """The kernels compile for an H100 (sm_90) without a GPU, and the PTX divides floats only with
    correct rounding (``div.rn``): no ``div.full`` / ``div.approx``, which the interpreter cannot show."""
    pytest.importorskip("triton")
    if os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("the kernels are interpreted in this process")
    from triton import compile as triton_compile
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from micam.estimators import _triton

    function = getattr(_triton, kernel)
    signature = dict(zip(function.arg_names, KERNEL_TYPES + ["constexpr"] * len(constants), strict=True))
    compiled = triton_compile(
        ASTSource(fn=function, signature=signature, constexprs=constants),
        target=GPUTarget("cuda", 90, 32),
        options={"num_warps": 4},
    )
    ptx = compiled.asm["ptx"]
    float_divisions = re.findall(r"\bdiv(?:\.[a-z]+)*\.f(?:32|64)\b", ptx)
    assert float_divisions, "the kernel divides bins by the span: a division must be there"
    assert all(".rn." in d for d in float_divisions), sorted(set(float_divisions))
    if kernel == "binned_map_sums_dot":
        assert "wgmma" in ptx or "mma" in ptx  # the counts go through the tensor cores


def micam_triton_source() -> str:
    import micam.estimators

    return str(Path(micam.estimators.__file__).parent / "_triton.py")


def test_gpu_route_says_why_it_cannot_run(interpreted_cases):
    assert "takes 2, 4, 8, 16, 32, 64 bins, not 33" in interpreted_cases["bins 33"]
    assert "'reference' estimator has no GPU kernel" in interpreted_cases["reference"]
    assert "float32" in interpreted_cases["float64"]
    maps, gray = awkward_maps(), gray_image()
    if os.environ.get("TRITON_INTERPRET") != "1" and not maps.is_cuda:
        with pytest.raises(RuntimeError, match="runs on CUDA tensors"):
            upsampled_mutual_information(maps, gray, "bilinear", route="gpu")
    with pytest.raises(ValueError, match="route must be one of"):
        upsampled_mutual_information(maps, gray, "bilinear", route="triton")
