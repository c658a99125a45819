"""Labelled images (with optional boxes) from three common layouts, and their model-ready tensors.

* an annotations JSON: a list of entries {"image": path relative to the JSON, "label": int, boxes}
  where boxes are under "boxes" (pixels of the stored image) or "boxes_<N>_xyxy" (pixels of an
  N x N version of it, as in the shared ILSVRC2012 subset whose images are stored at 227 x 227);
* an ImageNet-style folder of class subfolders (names that are integers give the class index, else
  subfolders sorted by name are numbered 0, 1, ...), no boxes;
* a CSV with a header naming a file column ("file", "image" or "path"), a label column ("label" or
  "class_index") and optionally "boxes" as "x0 y0 x1 y1; x0 y0 x1 y1" in the stored image's pixels.

Boxes are (x0, y0, x1, y1) pixel indices, inclusive. ``geometry`` says how an image becomes the
model's square input: "stretch" resizes straight to it (for pre-scaled images like the shared
subset, whose aspect ratio is already lost), "crop" resizes the shorter side then centre-crops (the
model's own preprocessing). Boxes follow the same transform.
"""

from __future__ import annotations

import csv
import json
import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from PIL import Image
from torch import Tensor
from torchvision.transforms import functional as TF

from micam.models import LoadedModel

Box = tuple[float, float, float, float]
Geometry = Literal["stretch", "crop"]
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


@dataclass(frozen=True)
class Sample:
    """One labelled image. ``key`` is unique within the dataset and names the image in results."""

    key: str
    path: Path
    label: int | None
    boxes: tuple[Box, ...] = ()
    box_frame: tuple[int, int] | None = None  # (W, H) the boxes refer to; None = the stored image's size
    invalid_boxes: int = 0  # boxes skipped when read (a NaN or infinite coordinate)


@dataclass(frozen=True)
class Dataset:
    samples: list[Sample]
    kind: str  # "annotations", "folder" or "csv"
    source: Path
    geometry: Geometry  # the recommended geometry for these images

    @property
    def has_boxes(self) -> bool:
        return any(sample.boxes for sample in self.samples)


def read_dataset(source: Path | str) -> Dataset:
    """Read an annotations JSON, a CSV or a class-folder tree (see the module docstring)."""
    source = Path(source)
    if not source.exists():
        raise ValueError(f"--data {source} does not exist; give an annotations JSON, a CSV or an image folder")
    if source.is_dir():
        return _read_folder(source)
    if source.suffix.lower() == ".json":
        return _read_annotations(source)
    if source.suffix.lower() == ".csv":
        return _read_csv(source)
    raise ValueError(f"--data {source}: expected a .json annotations file, a .csv file or a folder")


def _read_annotations(path: Path) -> Dataset:
    try:
        entries = json.loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not a JSON file ({error})") from None
    if isinstance(entries, dict):
        entries = entries.get("images", entries.get("annotations"))
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: expected a non-empty JSON list of {{'image', 'label', 'boxes'...}} entries")
    samples, stretched = [], False
    for index, entry in enumerate(entries):
        try:
            sample = _entry_sample(entry, path.parent)
        except (ValueError, TypeError) as error:
            raise ValueError(f"{path}: entry {index}: {error}") from None
        stretched |= sample.box_frame is not None
        samples.append(sample)
    _check_unique(samples, path)
    return Dataset(samples, "annotations", path, "stretch" if stretched else "crop")


def _entry_sample(entry: object, folder: Path) -> Sample:
    """One annotations entry: {"image": "relative/path.jpg", "label": 3, "boxes": [[x0, y0, x1, y1], ...]}."""
    if not isinstance(entry, dict) or "image" not in entry:
        raise ValueError("has no 'image' field (each entry is {'image': path, 'label': N, 'boxes': [...]})")
    image = entry["image"]
    if not isinstance(image, str) or not image.strip():
        raise ValueError(f"'image' must be a file path (text), got {image!r}")
    boxes, invalid, frame = _entry_boxes(entry)
    return Sample(image, folder / image, _label(entry.get("label")), boxes, frame, invalid)


def _entry_boxes(entry: dict[str, Any]) -> tuple[tuple[Box, ...], int, tuple[int, int] | None]:
    """The entry's boxes, how many were skipped as invalid, and the frame they refer to."""
    if "boxes" in entry:
        return *_boxes(entry["boxes"]), None
    for key, value in entry.items():
        match = re.fullmatch(r"boxes_(\d+)_xyxy", key)
        if match:
            side = int(match.group(1))
            return *_boxes(value), (side, side)
    return (), 0, None


def _read_folder(root: Path) -> Dataset:
    classes = sorted(p for p in root.iterdir() if p.is_dir())
    if not classes:
        raise ValueError(f"{root} has no class subfolders; an ImageNet-style folder holds one folder per class")
    numbered = all(p.name.isdigit() for p in classes)
    samples = []
    for index, folder in enumerate(classes):
        label = int(folder.name) if numbered else index
        for file in sorted(folder.iterdir()):
            if file.suffix.lower() in IMAGE_SUFFIXES:
                samples.append(Sample(f"{folder.name}/{file.name}", file, label))
    if not samples:
        raise ValueError(f"{root}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in its class folders")
    return Dataset(samples, "folder", root, "crop")


def _read_csv(path: Path) -> Dataset:
    with path.open(newline="", encoding="utf-8-sig") as handle:  # Excel writes a byte-order mark first
        rows = list(csv.DictReader(handle))
    if not rows:
        raise ValueError(f"{path} has no rows")
    columns = set(rows[0])
    file_column = next((c for c in ("file", "image", "path") if c in columns), None)
    label_column = next((c for c in ("label", "class_index") if c in columns), None)
    if file_column is None:
        raise ValueError(f"{path}: no 'file', 'image' or 'path' column (columns: {sorted(columns)})")
    samples = []
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        try:
            file = (row.get(file_column) or "").strip()
            if not file:
                raise ValueError(f"no file name in column {file_column!r}")
            text = (row.get("boxes") or "").strip()
            boxes, invalid = _boxes([part.split() for part in text.split(";") if part.strip()]) if text else ((), 0)
            label = _label(row.get(label_column) if label_column else None)
        except ValueError as error:
            raise ValueError(f"{path}: line {line}: {error}") from None
        samples.append(Sample(file, path.parent / file, label, boxes, None, invalid))
    _check_unique(samples, path)
    return Dataset(samples, "csv", path, "crop")


def _label(value: str | float | None) -> int | None:
    """A class index: an int, or text/float holding a whole number; 472.7, true or [1] are refused."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"label {value!r} is not a class index")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"label {value!r} is not a class index") from None
    if not number.is_integer() or number < 0:
        raise ValueError(f"label {value!r} is not a class index (a whole number 0 or more)")
    return int(number)


def _boxes(values: object) -> tuple[tuple[Box, ...], int]:
    """Boxes as (x0, y0, x1, y1), and how many were skipped: a box with a NaN or infinite coordinate
    is skipped with a warning and counted (never scored: it would count as a miss)."""
    if values is None:
        return (), 0
    if not isinstance(values, (list, tuple)):
        raise ValueError(f"boxes must be a list of [x0, y0, x1, y1], got {values!r}")
    boxes, invalid = [], 0
    for box in values:
        try:
            x0, y0, x1, y1 = (float(v) for v in box)
        except (TypeError, ValueError):
            raise ValueError(f"box {box!r} is not 4 numbers [x0, y0, x1, y1]") from None
        if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
            warnings.warn(f"box {list(box)} has a coordinate that is not a finite number; skipped", stacklevel=2)
            invalid += 1
            continue
        if x1 < x0 or y1 < y0:
            raise ValueError(f"box {list(box)} is not (x0, y0, x1, y1) with x0 <= x1 and y0 <= y1")
        boxes.append((x0, y0, x1, y1))
    return tuple(boxes), invalid


def _check_unique(samples: list[Sample], source: Path) -> None:
    seen: set[str] = set()
    for sample in samples:
        if sample.key in seen:
            raise ValueError(f"{source}: image {sample.key!r} is listed twice")
        seen.add(sample.key)


def prepare(image: Image.Image, sample: Sample, loaded: LoadedModel, geometry: Geometry) -> tuple[Tensor, list[Box]]:
    """The model's normalized (3, S, S) input and the sample's boxes in its pixels (boxes falling
    entirely outside a centre crop are dropped, the others clipped)."""
    size = loaded.input_size
    width, height = image.size
    if geometry == "stretch":
        resized = TF.resize(image, [size, size], interpolation=loaded.interpolation, antialias=True)
        scale_x, scale_y, left, top = size / width, size / height, 0.0, 0.0
    elif geometry == "crop":
        resized = TF.resize(image, loaded.resize_size, interpolation=loaded.interpolation, antialias=True)
        new_w, new_h = resized.size
        resized = TF.center_crop(resized, [size, size])
        scale_x, scale_y = new_w / width, new_h / height
        left, top = float(round((new_w - size) / 2.0)), float(round((new_h - size) / 2.0))
    else:
        raise ValueError(f"geometry must be 'stretch' or 'crop', got {geometry!r}")
    tensor = TF.normalize(TF.to_tensor(resized), loaded.mean, loaded.std)
    frame_w, frame_h = sample.box_frame or (width, height)
    fx, fy = scale_x * width / frame_w, scale_y * height / frame_h
    boxes = []
    for x0, y0, x1, y1 in sample.boxes:
        # Pixel x covers [x, x + 1) in edge coordinates; map the edges, then back to inclusive indices.
        nx0, ny0 = x0 * fx - left, y0 * fy - top
        nx1, ny1 = (x1 + 1) * fx - left - 1, (y1 + 1) * fy - top - 1
        if nx1 < 0 or ny1 < 0 or nx0 > size - 1 or ny0 > size - 1:
            continue
        boxes.append((max(nx0, 0.0), max(ny0, 0.0), min(nx1, size - 1.0), min(ny1, size - 1.0)))
    return tensor, boxes


def black_pixel(loaded: LoadedModel) -> Tensor:
    """(1, 3, 1, 1) normalized value of a black pixel: what "set the pixel to 0" means in pixel space."""
    mean = torch.tensor(loaded.mean).view(1, 3, 1, 1)
    std = torch.tensor(loaded.std).view(1, 3, 1, 1)
    return -mean / std
