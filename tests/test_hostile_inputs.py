"""Inputs a hostile or unlucky user gives micam (issue 14), each built here in a temporary folder: image
files of every mode, decompression bombs, malformed annotations, a full disk, unwritable output
folders, broken results files, concurrent calls on one model and half-precision inputs. Each must end
in a defined result or a one-line error with a documented exit code, never a traceback or a wrong
number. (Torn rows, locks, atomic writes, FIFOs, sanitized names and label checks are in
test_run_store.py and test_cli.py.)"""

from __future__ import annotations

import csv
import errno
import json
import struct
import threading
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from micam.cli.main import main
from micam.images import UnreadableImage, read_image, read_rgb


def _png(path: Path, width: int, height: int, bit_depth: int, color_type: int, pixels: bytes) -> Path:
    """A PNG written chunk by chunk: the modes Pillow cannot write (16-bit RGB) and headers that lie."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(pixels)) + chunk(b"IEND", b"")
    )
    return path


def _bomb(path: Path) -> Path:
    """A 100-byte file whose header claims 20,000 x 20,000 pixels (400 million)."""
    return _png(path, 20_000, 20_000, 8, 2, b"\x00" * 64)


def _pixel(image: Image.Image, x: int = 0, y: int = 0) -> tuple[int, ...]:
    return tuple(int(v) for v in np.asarray(image)[y, x])


# ---------------------------------------------------------------- image modes (case 5)
def test_sixteen_bit_images_are_scaled_to_eight_bits_not_clipped_to_white(tmp_path):
    gray = np.full((6, 5), 128 * 257, dtype=np.uint16)  # 8-bit 128 expanded to 16 bits
    gray[0, 0], gray[0, 1] = 0, 65535
    Image.fromarray(gray).save(tmp_path / "gray16.png")
    read = read_image(tmp_path / "gray16.png")
    assert read.image.mode == "RGB" and read.image.size == (5, 6)
    assert _pixel(read.image, 2, 2) == (128, 128, 128)  # Pillow's convert("RGB") gives (255, 255, 255)
    assert _pixel(read.image, 0, 0) == (0, 0, 0) and _pixel(read.image, 1, 0) == (255, 255, 255)
    assert read.notes == ["16-bit gray scaled to 8 bits"]
    row = b"\x00" + struct.pack(">HHH", 65535, 0, 128 * 257) * 3  # filter byte, then 3 RGB pixels
    rgb16 = _png(tmp_path / "rgb16.png", 3, 2, 16, 2, row * 2)
    assert _pixel(read_rgb(rgb16), 1, 1) == (255, 0, 128)
    floats = Image.fromarray(np.full((4, 4), 0.5, dtype=np.float32))
    floats.save(tmp_path / "float.tif")
    assert _pixel(read_rgb(tmp_path / "float.tif")) == (128, 128, 128)  # [0, 1] floats


def test_exif_orientation_is_applied_as_a_photo_viewer_shows_it(tmp_path):
    stored = Image.new("RGB", (4, 2), (0, 0, 255))
    stored.putpixel((0, 0), (255, 0, 0))  # the stored top-left pixel
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    stored.save(tmp_path / "phone.png", exif=exif)
    read = read_image(tmp_path / "phone.png")
    assert read.image.size == (2, 4)  # upright: taller than wide
    assert _pixel(read.image, 1, 0) == (255, 0, 0)  # top-left turned clockwise lands top-right
    assert read.notes == ["EXIF orientation 6 applied"]


def test_cmyk_palette_transparent_and_animated_images_read_as_rgb(tmp_path):
    Image.new("CMYK", (3, 3), (0, 255, 255, 0)).save(tmp_path / "cmyk.tif")
    assert _pixel(read_rgb(tmp_path / "cmyk.tif")) == (255, 0, 0)

    palette = Image.new("P", (2, 1))
    palette.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    palette.putpixel((1, 0), 1)
    palette.save(tmp_path / "palette.png", transparency=0)  # colour 0 is transparent
    assert _pixel(read_rgb(tmp_path / "palette.png"), 0) == (255, 255, 255)
    assert _pixel(read_rgb(tmp_path / "palette.png", background="black"), 0) == (0, 0, 0)
    assert _pixel(read_rgb(tmp_path / "palette.png"), 1) == (200, 100, 50)

    Image.new("LA", (2, 2), (100, 0)).save(tmp_path / "la.png")
    read = read_image(tmp_path / "la.png")
    assert _pixel(read.image) == (255, 255, 255) and read.notes == ["transparency composited on white"]
    Image.new("RGBA", (2, 2), (200, 0, 0, 128)).save(tmp_path / "half.png")
    half = np.asarray(read_rgb(tmp_path / "half.png"), dtype=float)[0, 0]
    assert np.allclose(half, [200 * 128 / 255 + 127, 127, 127], atol=1)  # alpha-weighted with white
    Image.new("RGBA", (2, 2), (1, 2, 3, 255)).save(tmp_path / "opaque.png")
    assert read_image(tmp_path / "opaque.png").notes == []  # an opaque alpha channel changes nothing

    frames = [Image.new("RGB", (4, 4), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    read = read_image(tmp_path / "anim.gif")
    assert _pixel(read.image) == (255, 0, 0) and read.notes == ["first frame of 2"]


# ---------------------------------------------------------------- decompression bombs (case 12)
def test_a_decompression_bomb_or_an_image_over_the_limit_is_unreadable_not_fatal(tmp_path):
    with pytest.raises(UnreadableImage, match="400,000,000 pixels exceeds the limit"):
        read_rgb(_bomb(tmp_path / "bomb.png"))
    Image.new("RGB", (20, 10)).save(tmp_path / "small.png")
    with pytest.raises(UnreadableImage, match="200 pixels exceeds the limit of 100"):
        read_rgb(tmp_path / "small.png", max_pixels=100)
    assert read_rgb(tmp_path / "small.png", max_pixels=200).size == (20, 10)
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(UnreadableImage, match="text.png: cannot read it as an image"):
        read_rgb(tmp_path / "text.png")
    with pytest.raises(UnreadableImage, match="does not exist"):
        read_rgb(tmp_path / "missing.png")


def _photos(folder: Path, count: int) -> list[Path]:
    paths = []
    for i in range(count):
        paths.append(folder / f"photo{i}.png")
        Image.new("RGB", (40, 40), (40 * i, 200 - 30 * i, 30)).save(paths[-1])
    return paths


def test_explain_skips_a_bomb_and_still_writes_its_summary(tmp_path, tiny_zoo, monkeypatch, capsys):
    good = _photos(tmp_path, 2)
    bomb = _bomb(tmp_path / "bomb.png")
    out = tmp_path / "out"
    argv = ["explain", str(good[0]), str(bomb), str(good[1]), "--method", "grad-cam", "--out", str(out)]
    assert main([*argv, "--device", "cpu"]) == 1
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(summary["images"]) == ["photo0", "photo1"]
    assert list(summary["failures"]) == [str(bomb)] and "exceeds the limit" in summary["failures"][str(bomb)]
    assert "skipped" in capsys.readouterr().err


def test_evaluate_keeps_the_good_images_of_a_batch_holding_a_bomb(tmp_path, tiny_zoo, monkeypatch):
    _photos(tmp_path, 3)
    _bomb(tmp_path / "bomb.png")
    listing = tmp_path / "list.csv"
    listing.write_text("file,label\nphoto0.png,0\nbomb.png,1\nphoto1.png,2\nphoto2.png,3\n")
    out = tmp_path / "run"
    argv = ["evaluate", "--data", str(listing), "--out", str(out), "--methods", "grad-cam", "--device", "cpu"]
    assert main([*argv, "--metrics", "drop-increase", "--batch-size", "4", "--loader-workers", "0"]) == 1
    results = json.loads((out / "results.json").read_text())
    assert results["n_images"] == 3 and list(results["skipped"]["images"]) == ["bomb.png"]
    assert "exceeds the limit" in results["skipped"]["images"]["bomb.png"]


# ---------------------------------------------------------------- annotations (cases 8 and 13)
@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"image": 123, "label": 1}, "entry 1: 'image' must be a file path \\(text\\), got 123"),
        ({"image": None, "label": 1}, "entry 1: 'image' must be a file path"),
        ({"label": 1}, "entry 1: has no 'image' field"),
        ({"image": "b.png", "label": 1, "boxes": 7}, "entry 1: boxes must be a list"),
        ({"image": "b.png", "label": 1, "boxes": [[1, 2, 3]]}, "entry 1: box \\[1, 2, 3\\] is not 4 numbers"),
        ({"image": "b.png", "label": [1]}, "entry 1: label \\[1\\] is not a class index"),
        ({"image": "b.png", "label": 472.7}, "entry 1: label 472.7 is not a class index"),
        ({"image": "b.png", "label": True}, "entry 1: label True is not a class index"),
    ],
)
def test_a_malformed_annotation_entry_is_named_with_its_file_and_index(tmp_path, entry, message):
    from micam.evaluation import read_dataset

    annotations = tmp_path / "data.json"
    annotations.write_text(json.dumps([{"image": "a.png", "label": 0}, entry]))
    with pytest.raises(ValueError, match=f"data.json: {message}"):
        read_dataset(annotations)


def test_null_boxes_mean_none_and_bad_files_and_csv_lines_are_named(tmp_path):
    from micam.evaluation import read_dataset

    annotations = tmp_path / "data.json"
    annotations.write_text(json.dumps([{"image": "a.png", "label": 0, "boxes": None}]))
    assert read_dataset(annotations).samples[0].boxes == ()
    annotations.write_text('[{"image": "a.png", ')
    with pytest.raises(ValueError, match="data.json: not a JSON file"):
        read_dataset(annotations)
    listing = tmp_path / "list.csv"
    listing.write_text("file,label,boxes\na.png,1,1 2 3 4\nb.png,x,\n")
    with pytest.raises(ValueError, match="list.csv: line 3: label 'x' is not a class index"):
        read_dataset(listing)
    listing.write_text("file,label\n,1\n")
    with pytest.raises(ValueError, match="list.csv: line 2: no file name"):
        read_dataset(listing)


def test_invalid_boxes_are_counted_in_the_results_never_scored(tmp_path, tiny_zoo, monkeypatch):
    _photos(tmp_path, 2)
    annotations = tmp_path / "data.json"
    nan_box = [float("nan"), 0, 10, 10]
    annotations.write_text(
        json.dumps(
            [
                {"image": "photo0.png", "label": 0, "boxes": [nan_box, [0, 0, 20, 20]]},
                {"image": "photo1.png", "label": 1, "boxes": [nan_box]},
            ]
        )
    )
    out = tmp_path / "run"
    argv = ["evaluate", "--data", str(annotations), "--out", str(out), "--methods", "grad-cam", "--device", "cpu"]
    with pytest.warns(UserWarning, match="not a finite number"):
        assert main([*argv, "--metrics", "localization", "--loader-workers", "0"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["skipped"]["invalid_boxes"] == 2
    assert "Boxes skipped as invalid (never scored): 2." in (out / "results.md").read_text()
    with (out / "per_image.csv").open() as handle:
        rows = {r["image"]: r for r in csv.DictReader(handle)}
    assert rows["photo1.png"]["pointing_game"] == "nan"  # no valid box: not scored (not a miss)
    assert rows["photo0.png"]["pointing_game"] in ("0", "1", "0.0", "1.0")


# ---------------------------------------------------------------- concurrency and precision (cases 7, 13)
def _train_mode_model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.BatchNorm2d(16),  # train mode uses batch statistics: a call in the wrong mode differs
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 5),
    )
    return model.train()


def test_concurrent_calls_on_one_model_in_train_mode_give_the_sequential_maps(tmp_path):
    from micam.methods import MICAM, GradCAM

    model = _train_mode_model()
    inputs = [torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(i)) for i in range(6)]
    methods = [GradCAM, MICAM, GradCAM, MICAM, GradCAM, MICAM]
    expected = [method(model, ["3"])(x, targets=[1, 3]) for method, x in zip(methods, inputs, strict=True)]
    found: list[torch.Tensor | None] = [None] * 6
    start = threading.Barrier(6)

    def explain(index: int) -> None:
        cam = methods[index](model, ["3"])
        start.wait()
        for _ in range(3):
            found[index] = cam(inputs[index], targets=[1, 3])

    threads = [threading.Thread(target=explain, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(torch.equal(f, e) for f, e in zip(found, expected, strict=True))
    assert model.training and all(m.training for m in model.modules())  # every call restored the mode
    assert not any(m._forward_hooks for m in model.modules())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_run_in_the_models_dtype(dtype):
    from micam.methods import METHODS
    from micam.metrics import deletion_insertion, paper_drop_increase

    model = _train_mode_model().eval()
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    for name, method in METHODS.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            full, half = method(model, ["3"])(x, targets=[1, 2]), method(model, ["3"])(x.to(dtype), targets=[1, 2])
        assert half.dtype == torch.float32 and half.shape == full.shape, name
        assert (half - full).abs().max() < 0.1, name  # the same map, up to the input's rounding
    curves = deletion_insertion(model, x.to(dtype), torch.rand(2, 16, 16), [1, 2], steps=4)
    assert all(torch.isfinite(v).all() for v in curves.values() if isinstance(v, torch.Tensor))
    drop = paper_drop_increase(model, x.to(dtype), torch.rand(2, 16, 16), [1, 2])
    assert all(torch.isfinite(torch.as_tensor(v)).all() for v in drop.values())


# ---------------------------------------------------------------- disk, folders, files (cases 4 and 13)
def _full_disk_after(calls: int, write, file: str = ""):  # type: ignore[no-untyped-def]
    """``write`` that raises ENOSPC from its ``calls``-th call (writing ``file``, if named) on, as a full disk does."""
    count = {"n": 0}

    def full(*args, **kwargs):  # type: ignore[no-untyped-def]
        count["n"] += not file or Path(args[0]).name == file
        if count["n"] >= calls:
            raise OSError(errno.ENOSPC, "No space left on device")
        return write(*args, **kwargs)

    return full


def test_a_full_disk_stops_evaluate_with_what_was_saved_and_resume_finishes(tmp_path, tiny_zoo, monkeypatch, capsys):
    from micam.evaluation import store

    _photos(tmp_path, 6)
    listing = tmp_path / "list.csv"
    listing.write_text("file,label\n" + "".join(f"photo{i}.png,{i % 5}\n" for i in range(6)))
    out = tmp_path / "run"
    argv = ["evaluate", "--data", str(listing), "--out", str(out), "--methods", "grad-cam", "--device", "cpu"]
    argv += ["--metrics", "drop-increase", "--batch-size", "2", "--loader-workers", "0"]
    writer = store.append_csv
    monkeypatch.setattr(store, "append_csv", _full_disk_after(2, writer, "per_image.csv"))  # batch 2's rows
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"micam evaluate: error: disk full: 2 images saved in {out}, rerun with --resume"
    monkeypatch.setattr(store, "append_csv", writer)  # space again
    assert main([*argv, "--resume"]) == 0
    assert json.loads((out / "results.json").read_text())["n_images"] == 6


def test_a_full_disk_stops_explain_with_a_count_not_a_traceback(tmp_path, tiny_zoo, monkeypatch, capsys):
    from micam.cli import explain

    good = _photos(tmp_path, 3)
    monkeypatch.setattr(explain, "save_overlay", _full_disk_after(2, explain.save_overlay))
    out = tmp_path / "out"
    assert main(["explain", *map(str, good), "--method", "grad-cam", "--out", str(out), "--device", "cpu"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"micam explain: error: disk full: 1 images explained in {out}")


def test_an_out_that_is_a_file_or_cannot_be_made_is_refused_before_any_work(tmp_path, tiny_zoo, monkeypatch, capsys):
    (photo,) = _photos(tmp_path, 1)
    taken = tmp_path / "taken"
    taken.write_text("a file")
    listing = tmp_path / "list.csv"
    listing.write_text("file,label\nphoto0.png,1\n")
    for out, message in ((taken, "is a file, not a folder"), (taken / "sub", "cannot be created: Not a directory")):
        assert main(["explain", str(photo), "--out", str(out), "--device", "cpu"]) == 2
        assert message in capsys.readouterr().err
        assert main(["evaluate", "--data", str(listing), "--out", str(out), "--device", "cpu"]) == 2
        assert message in capsys.readouterr().err
    results = tmp_path / "results"
    results.mkdir()
    assert main(["report", "--results", str(results), "--out", str(results)]) == 2
    assert "is a folder; name the HTML file" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[1, 2]", "is not a micam evaluate results.json \\(a JSON list\\)"),
        ('{"model": "x"}', "is not a micam evaluate results.json \\(no \\['n_images', 'methods'\\]\\)"),
        ('{"model": ', "cannot read .*results.json \\(JSONDecodeError"),
    ],
)
def test_report_names_a_results_json_it_cannot_use(tmp_path, capsys, content, message):
    import re

    (tmp_path / "results.json").write_text(content)
    assert main(["report", "--results", str(tmp_path)]) == 2
    assert re.search(message, capsys.readouterr().err)


def test_benchmark_refuses_unknown_models_and_says_when_none_loaded(tmp_path, capsys):
    out = str(tmp_path / "bench")
    assert main(["benchmark", "--models", "bogus", "--out", out]) == 2
    assert "unknown model 'bogus'" in capsys.readouterr().err
    assert main(["benchmark", "--models", "torchvision:no_such_net", "--out", out, "--methods", "forward"]) == 2
    assert "no model could be loaded, nothing was timed" in capsys.readouterr().err
    assert main(["benchmark", "--models", "mobilenet_v2", "--batch-sizes", "1,x", "--out", out]) == 2
    assert "--batch-sizes must be comma-separated whole numbers" in capsys.readouterr().err
    assert not (tmp_path / "bench" / "benchmark.json").exists()


def test_weights_that_are_a_text_file_are_a_usage_error(tmp_path, capsys):
    (photo,) = _photos(tmp_path, 1)
    weights = tmp_path / "weights.pth"
    weights.write_text("these are not weights")
    assert main(["explain", str(photo), "--weights", str(weights), "--out", str(tmp_path / "o")]) == 2
    assert "weights.pth" in capsys.readouterr().err
