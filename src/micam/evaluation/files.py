"""The run folder's files: their names and columns (the one place that knows them), written so that a
kill or a full disk never leaves half of one (CSV rows appended whole and fsynced, JSON replaced all at
once; a torn last CSV line is dropped on reading)."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PER_IMAGE = "per_image.csv"
ADDED = "per_image_added.csv"  # metric columns gained by a resumed run, per (image, method)
CURVES = "curves.csv"
COUNTERFACTUAL = "counterfactual.csv"
SKIPPED = "skipped.csv"
SANITY = "sanity.csv"
SETTINGS = "settings.json"
RESULTS = "results.json"
REPORT = "results.md"
LOCK = ".micam.lock"  # held by the process writing the folder
EXTENSION = "extension"  # settings.json: {"methods": [...], "metrics": [...]} the run had before it gained any

ROW_KEYS = ["image", "label", "predicted", "target", "correct", "method", "seconds"]
ADDED_KEYS = ["image", "method"]
CURVE_COLUMNS = ["image", "method", "kind", "values"]
CHANGE_METRICS = ("mean_abs_change", "relative_change", "rank_correlation")
COUNTERFACTUAL_COLUMNS = ["image", "method", "intervention", *CHANGE_METRICS]
SIMILARITIES = ("ssim", "spearman", "hog")
SANITY_COLUMNS = ["method", "stage", "layer", *SIMILARITIES]
SKIPPED_COLUMNS = ["image", "reason"]


def read_csv(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV, dropping a last line cut short by a killed run: rows are appended whole, each
    ending in a newline, so a last line without one is torn (even where its cut leaves every column,
    as in ``...,9`` of ``97.3``)."""
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        text = handle.read()
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = reader.fieldnames or []
    return [row for row in reader if None not in row.values() and len(row) == len(columns)]


def csv_header(path: Path) -> list[str]:
    """The columns of a CSV file (empty when there is none)."""
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return next(csv.reader(handle), [])


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` all at once (temporary file, fsync, rename): a kill or a full disk
    leaves the old file or the new one, never half of one."""
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def read_json(path: Path) -> Any:
    """A JSON file of the run folder; a damaged one is named in the error."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read {path} ({type(error).__name__}: {error})") from None


def rewrite_csv(path: Path, columns: Sequence[str], rows: list[dict[str, Any]]) -> None:
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_atomically(path, text.getvalue())


def append_csv(path: Path, columns: Sequence[str], rows: list[dict[str, Any]]) -> None:
    """Append rows in one write (an interrupt cannot leave half a batch), then fsync."""
    if not rows and path.exists():
        return
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(columns), extrasaction="ignore")
    if not path.exists():
        writer.writeheader()
    writer.writerows(rows)
    with path.open("a", newline="") as handle:
        handle.write(text.getvalue())
        handle.flush()
        os.fsync(handle.fileno())
