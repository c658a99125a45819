"""scripts/recheck.py: the image positions it reads, the subset it writes and the differences it reports."""

import json

import pytest

from conftest import load_script


def _script():
    return load_script("recheck")


def test_positions_are_one_based_ranges_and_lists():
    recheck = _script()
    assert recheck.positions("129-132") == [128, 129, 130, 131]
    assert recheck.positions("5,9") == [4, 8]
    assert recheck.positions("1-2,7") == [0, 1, 6]
    with pytest.raises(ValueError, match="1-based"):
        recheck.positions("0")


def test_subset_keeps_each_image_key(tmp_path):
    recheck = _script()
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "images" / "b.png").write_bytes(b"x")
    entries = [{"image": f"images/{name}.png", "label": i} for i, name in enumerate("abc")]
    (data / "annotations.json").write_text(json.dumps(entries))
    folder = tmp_path / "subset"
    folder.mkdir()
    path = recheck.subset(data / "annotations.json", [1], folder)
    assert json.loads(path.read_text()) == [{"image": "images/b.png", "label": 1}]
    assert (folder / "images" / "b.png").read_bytes() == b"x"  # same relative path, so the same key


def test_compare_reports_mean_and_largest_difference_with_where():
    recheck = _script()
    committed = {
        ("a.png", "mi-cam"): {"image": "a.png", "method": "mi-cam", "ebpg": "50.0", "pointing_game": "1.0"},
        ("b.png", "mi-cam"): {"image": "b.png", "method": "mi-cam", "ebpg": "60.0", "pointing_game": ""},
    }
    again = {
        ("a.png", "mi-cam"): {"image": "a.png", "method": "mi-cam", "ebpg": "50.5", "pointing_game": "1.0"},
        ("b.png", "mi-cam"): {"image": "b.png", "method": "mi-cam", "ebpg": "58.5", "pointing_game": ""},
    }
    summary = recheck.compare(committed, again)
    assert summary["ebpg"] == {
        "mean_abs_difference": 1.0,  # (0.5 + 1.5) / 2
        "max_abs_difference": 1.5,
        "method": "mi-cam",
        "image": "b.png",
    }
    assert summary["pointing_game"] == {"mean_abs_difference": 0.0, "max_abs_difference": 0.0}  # empty cells skipped
