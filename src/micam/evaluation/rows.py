"""A run's per-image rows as they are on disk: ``per_image.csv`` joined with the columns a resumed run
added (``per_image_added.csv``), and which images are finished."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from micam.evaluation.files import ADDED, ADDED_KEYS, EXTENSION, PER_IMAGE, SETTINGS, csv_header, read_csv, read_json


def read_rows(out: str | Path) -> list[dict[str, str]]:
    """``per_image.csv``'s rows, each with the columns a resumed run added for it (per_image_added.csv,
    ``merged_added``)."""
    folder = Path(out)
    rows = read_csv(folder / PER_IMAGE)
    added = merged_added(read_csv(folder / ADDED))
    if not added:
        return rows
    return [row | _values(added.get((row["image"], row["method"]), {})) for row in rows]


def merged_added(rows: Iterable[dict[str, str]]) -> dict[tuple[str, str], dict[str, str]]:
    """per_image_added.csv's rows, one per (image, method): each later row's values over the earlier
    ones' (an extension writes only the columns it computed; an empty cell erases nothing)."""
    merged: dict[tuple[str, str], dict[str, str]] = {}
    for row in rows:
        key = (row["image"], row["method"])
        merged[key] = merged.get(key, {}) | {column: value for column, value in row.items() if value}
    return merged


def finished_rows(out: str | Path, base_methods: Sequence[str], added: Sequence[str]) -> list[dict[str, str]]:
    """The joined rows of the finished images: those with a row for every one of ``base_methods``
    (the run's methods before it gained any). A gained column (``added``) counts where it has a value:
    an image that an earlier extension covered and a later one has not reached yet keeps the earlier
    extension's values (torn rows never get here: ``read_csv`` drops them). A gained method's row
    counts once it has any gained value (its per_image_added.csv row is written first; a torn one leaves
    it out)."""
    rows = read_rows(out)
    finished = finished_images(rows, base_methods)
    kept = [{k: v for k, v in row.items() if k not in added or v} for row in rows if row["image"] in finished]
    return [row for row in kept if row["method"] in base_methods or not added or any(c in row for c in added)]


def added_columns(out: str | Path) -> list[str]:
    """The metric columns a resumed run added (per_image_added.csv's, after image and method)."""
    return csv_header(Path(out) / ADDED)[len(ADDED_KEYS) :]


def settings_extension(out: str | Path) -> dict[str, Any] | None:
    """What a run had before it first gained methods or metrics (None if it never did)."""
    path = Path(out) / SETTINGS
    return read_json(path).get(EXTENSION) if path.exists() else None


def _values(added: dict[str, str]) -> dict[str, str]:
    return {key: value for key, value in added.items() if key not in ADDED_KEYS}


def finished_images(rows: Iterable[dict[str, str]], methods: Sequence[str], columns: Sequence[str] = ()) -> set[str]:
    """The images that have a row for every one of ``methods`` (a batch is appended whole), with a value
    in each of ``columns`` (the added ones)."""
    methods_of: dict[str, set[str]] = {}
    for row in rows:
        if all(row.get(column) for column in columns):
            methods_of.setdefault(row["image"], set()).add(row["method"])
    return {image for image, found in methods_of.items() if found >= set(methods)}


def devices_by_image(rows: Iterable[dict[str, str]], results: dict[str, Any]) -> dict[str, str]:
    """Image -> the device of the session that made its first rows. Sessions append their images' rows in
    order and ``results["runs"]`` lists them with their counts; a session that only extended the run
    (``images`` 0: gained methods or metrics) made no image's first rows."""
    images = list(dict.fromkeys(row["image"] for row in rows))
    devices = [session["device_name"] for session in results.get("runs", []) for _ in range(session["images"])]
    return dict(zip(images, devices, strict=False))
