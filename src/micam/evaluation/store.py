"""The run folder: its file names and columns, and the only copy of a run's results.

Rows are appended a batch at a time (``per_image.csv`` last, flushed and fsynced: a row there is the
record that an image is finished), and ``results.json`` / ``results.md`` are always rebuilt from the
rows on disk, never from memory, so a cut batch cannot leak into the summaries and a resumed run
summarizes exactly as an uninterrupted one.

A resumed run may gain methods and metrics, never lose one. Its earlier rows stay byte for byte:
a gained method's rows are appended to ``per_image.csv``; gained metric columns, for every method and
image, go to ``per_image_added.csv`` (image, method, the gained columns), since ``per_image.csv``
keeps the columns it was created with. ``read_rows`` joins the two. The run's methods and metrics
before its first gain are kept in settings.json under ``EXTENSION``: an image the run had finished
counts as finished whatever it gained, so an extension may cover only the first images (``--limit``),
and each method and metric is summarized over the images that have it (its ``n``).
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from micam.evaluation.compare import COMPARED_METRICS, paired_differences
from micam.evaluation.files import (
    ADDED,
    ADDED_KEYS,
    CHANGE_METRICS,
    COUNTERFACTUAL,
    COUNTERFACTUAL_COLUMNS,
    CURVE_COLUMNS,
    CURVES,
    EXTENSION,
    LOCK,
    PER_IMAGE,
    REPORT,
    RESULTS,
    ROW_KEYS,
    SANITY,
    SANITY_COLUMNS,
    SETTINGS,
    SIMILARITIES,
    SKIPPED,
    SKIPPED_COLUMNS,
    append_csv,
    csv_header,
    read_csv,
    read_json,
    rewrite_csv,
    write_atomically,
)
from micam.evaluation.rows import (
    added_columns,
    finished_images,
    finished_rows,
    merged_added,
    read_rows,
    settings_extension,
)
from micam.evaluation.settings import comparable
from micam.evaluation.tables import markdown_report
from micam.metrics import summarize

PAIRED_FOCUS = "mi-cam"  # the method results.json compares image by image with every other one


@dataclass
class BatchRows:
    """What one batch adds to the run folder."""

    per_image: list[dict[str, Any]] = field(default_factory=list)
    gained: list[dict[str, Any]] = field(default_factory=list)  # image, method and gained metric columns only
    counterfactual: list[dict[str, Any]] = field(default_factory=list)
    curves: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class ToDo:
    """What a resumed run still computes for an image it had finished before gaining methods or metrics."""

    methods: tuple[str, ...]  # every metric (the methods it gained)
    gained: tuple[str, ...]  # only gained metric columns (the methods it had) ...
    columns: tuple[str, ...] = ()  # ... those of these columns that one of them lacks (by their metric groups)


@dataclass
class Session:
    """The device and software one session of a run computed on."""

    device_name: str
    torch: str
    cudnn_tf32: bool | None  # None on the CPU
    engine: str = "local"
    workers: list[dict[str, Any]] = field(default_factory=list)  # per worker: device, images, seconds
    stage_seconds: dict[str, float] = field(default_factory=dict)  # the step's profile (``Step.stage``)


@dataclass
class Earlier:
    """The sessions a resumed run continues: their wall time, devices and image count."""

    seconds: float = 0.0
    runs: list[dict[str, Any]] = field(default_factory=list)
    images: int = 0


class RunStore:
    """Owns one run folder: ``metrics`` are the per-image metric columns, in table order."""

    def __init__(self, out: str | Path, metrics: Sequence[str]) -> None:
        self.out = Path(out)
        self.metrics = list(metrics)
        self.columns = [*ROW_KEYS, *self.metrics]  # per_image.csv's (a resumed run keeps the file's own)
        self.added: list[str] = []  # metric columns in per_image_added.csv
        self.base_methods: list[str] = []  # every finished image has these methods' rows
        self.extension: dict[str, Any] | None = None  # the run before its first gain (settings.json's EXTENSION)
        self.earlier = Earlier()
        self._lock_handle: IO[str] | None = None
        self.missing: dict[str, ToDo] = {}  # finished image -> what a resumed run gained for it

    def path(self, name: str) -> Path:
        return self.out / name

    # ------------------------------------------------------------------------- opening and resuming

    def open(self, settings: dict[str, Any], resume: bool, methods: Sequence[str]) -> tuple[set[str], dict[str, str]]:
        """Check the folder against ``settings``, record them, keep only the rows of finished images
        (every method done), and return the finished images and the skipped ones (image -> reason).

        A resumed run may gain methods and metrics (supersets of the run's own): the rows of its
        finished images are kept as they are, and ``self.missing`` says, per such image, what is still
        to compute for it (``ToDo``)."""
        existing = self.path(PER_IMAGE)
        if existing.exists() and not resume:
            raise ValueError(
                f"{self.out} already holds results; pass --resume to continue that run, or choose another --out"
            )
        self.out.mkdir(parents=True, exist_ok=True)
        self._lock()
        saved = saved_settings(self.out, resume)
        earlier_methods = list(saved.get("methods") or methods) if saved else list(methods)
        gained = [k for k in ("methods", "metrics") if set(saved.get(k) or ()) <= set(settings.get(k) or ())]
        if saved and _compared(saved, gained) != _compared(settings, gained):
            changed = sorted(k for k in comparable(settings) if saved.get(k) != settings.get(k))
            raise ValueError(f"cannot resume {self.out}: settings differ from the earlier run in {changed}")
        base = saved.get(EXTENSION)
        if base is None and saved and any(set(settings.get(k) or ()) - set(saved.get(k) or ()) for k in gained):
            base = {"methods": earlier_methods, "metrics": list(saved.get("metrics") or [])}
        self.extension = base
        self.base_methods = list(base["methods"]) if base else list(methods)
        write_atomically(self.path(SETTINGS), json.dumps(settings | ({EXTENSION: base} if base else {}), indent=2))
        rows = read_csv(existing)
        complete = finished_images(rows, self.base_methods)  # what the run had before any gain is done
        rows = [r for r in rows if r["image"] in complete and r["method"] in earlier_methods]
        self._gain_columns(csv_header(existing))
        added = self._finished_added(complete)
        lacking = {key: tuple(c for c in self.added if not row.get(c)) for key, row in added.items()}
        have_of: dict[str, set[str]] = {}
        for row in rows:
            have_of.setdefault(row["image"], set()).add(row["method"])
        self.missing = {}
        for image in sorted(complete):
            have = have_of[image]
            without = {m: lacking.get((image, m), tuple(self.added)) for m in methods if m in have}
            short = tuple(m for m, columns in without.items() if columns)  # methods lacking gained columns
            columns = tuple(c for c in self.added if any(c in without[m] for m in short))
            todo = ToDo(tuple(m for m in methods if m not in have), short, columns)
            if todo.methods or todo.gained:
                self.missing[image] = todo
        done = complete - set(self.missing)
        rewrite_csv(existing, self.columns, rows)
        if self.added:
            rewrite_csv(self.path(ADDED), [*ADDED_KEYS, *self.added], list(added.values()))
        kept = [r for r in read_csv(self.path(COUNTERFACTUAL)) if r["image"] in complete]
        rewrite_csv(self.path(COUNTERFACTUAL), COUNTERFACTUAL_COLUMNS, kept)
        curves = {
            (r["image"], r["method"], r["kind"]): r for r in read_csv(self.path(CURVES)) if r["image"] in complete
        }
        rewrite_csv(self.path(CURVES), CURVE_COLUMNS, list(curves.values()))
        skipped = {r["image"]: r["reason"] for r in read_csv(self.path(SKIPPED))}
        previous = self.path(RESULTS)
        try:
            earlier = read_json(previous) if previous.exists() and complete else None
        except ValueError:  # damaged (a kill or a full disk mid-write): rebuilt from the rows
            earlier = {}
        damaged = earlier is not None and (not isinstance(earlier, dict) or not earlier)
        if damaged:
            unknown = {"device_name": "unknown (results.json was damaged)", "torch": None, "seconds": 0.0}
            self.earlier = Earlier(0.0, [unknown | {"images": len(complete)}], len(complete))
        elif earlier is not None:
            seconds = float(earlier.get("wall_time_s", 0.0))
            runs = earlier.get("runs") or [
                {
                    "device_name": (earlier.get("settings") or {}).get("device_name"),
                    "torch": (earlier.get("settings") or {}).get("torch"),
                    "images": len(complete),
                    "seconds": seconds,
                }
            ]
            self.earlier = Earlier(seconds, runs, len(complete))
        return done, skipped

    def _gain_columns(self, header: list[str]) -> None:
        """``per_image.csv`` keeps the columns it has; metric columns it lacks go to per_image_added.csv."""
        if not header:
            return
        self.columns = header
        earlier = added_columns(self.out)
        self.added = [*earlier, *(m for m in self.metrics if m not in header and m not in earlier)]

    def _finished_added(self, complete: set[str]) -> dict[tuple[str, str], dict[str, str]]:
        """The values of per_image_added.csv of finished images, one row per (image, method) (``merged_added``).
        An image a later extension has not reached yet keeps the earlier extensions' values."""
        return {key: row for key, row in merged_added(read_csv(self.path(ADDED))).items() if key[0] in complete}

    def _lock(self) -> None:
        """Hold an exclusive lock on the folder until ``close`` (or the process ends): two processes
        appending to one run would duplicate its rows."""
        if self._lock_handle is not None:
            return
        handle = self.path(LOCK).open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise ValueError(
                f"{self.out} is in use by {holder}; wait for it to finish, or choose another --out"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()}")
        handle.flush()
        self._lock_handle = handle

    def saved_images(self, methods: Sequence[str]) -> int:
        """How many images have every method's row on disk (what a resumed run keeps)."""
        return len(finished_images(read_rows(self.out), methods, self.added))

    def close(self) -> None:
        """Release the folder's lock."""
        if self._lock_handle is not None:
            fcntl.flock(self._lock_handle, fcntl.LOCK_UN)
            self._lock_handle.close()
            self._lock_handle = None

    # ------------------------------------------------------------------------- writing
    def append(self, batch: BatchRows) -> None:
        """A batch's rows; ``per_image.csv`` last: its rows commit the batch."""
        append_csv(self.path(COUNTERFACTUAL), COUNTERFACTUAL_COLUMNS, batch.counterfactual)
        append_csv(self.path(CURVES), CURVE_COLUMNS, batch.curves)
        if self.added:
            append_csv(self.path(ADDED), [*ADDED_KEYS, *self.added], [*batch.gained, *batch.per_image])
        append_csv(self.path(PER_IMAGE), self.columns, batch.per_image)

    def append_skipped(self, failures: dict[str, str]) -> None:
        append_csv(self.path(SKIPPED), SKIPPED_COLUMNS, [{"image": k, "reason": v} for k, v in failures.items()])

    def sanity_methods(self) -> set[str]:
        """The methods the sanity check has rows for."""
        return {r["method"] for r in read_csv(self.path(SANITY))}

    def has_sanity(self, methods: Iterable[str]) -> bool:
        return self.sanity_methods() >= set(methods)

    def write_sanity(self, rows: list[dict[str, Any]]) -> None:
        """Add the sanity-check rows of methods that had none (the earlier rows stay as they are)."""
        earlier = [r for r in read_csv(self.path(SANITY)) if r["method"] not in {row["method"] for row in rows}]
        rewrite_csv(self.path(SANITY), SANITY_COLUMNS, [*earlier, *rows])

    # ------------------------------------------------------------------------- results
    def results(
        self,
        *,
        model: str,
        methods: Sequence[str],
        n_requested: int,
        n_available: int | None = None,
        settings: dict[str, Any],
        skipped: dict[str, str],
        seconds: float,
        session: Session,
        invalid_boxes: int = 0,
    ) -> dict[str, Any]:
        """``results.json`` (and ``results.md``) rebuilt from the rows on disk; ``runs`` gains this
        session (its device, the images it added and its time) once it has added images.
        ``invalid_boxes``: boxes of the run's images skipped when read (never scored)."""
        rows = finished_rows(self.out, self.base_methods, self.added)
        by_method: dict[str, list[dict[str, str]]] = {name: [] for name in methods}
        for row in rows:
            by_method.setdefault(row["method"], []).append(row)
        summaries = {
            name: {metric: summarize([float(r[metric]) for r in found if r.get(metric)]) for metric in self.metrics}
            | {"seconds_per_image": summarize([float(r["seconds"]) for r in found])}
            for name, found in by_method.items()
        }
        first = {r["image"]: r for r in rows}
        correct = [float(r["correct"]) for r in first.values() if r["correct"] != ""]
        current: dict[str, Any] = {
            "device_name": session.device_name,
            "torch": session.torch,
            "images": len(first) - self.earlier.images,
            "seconds": round(seconds, 2),
            "cudnn_tf32": session.cudnn_tf32,
        }
        if session.engine != "local":
            current |= {"engine": session.engine, "workers": session.workers}
        if session.stage_seconds:  # most costly first; summed over workers
            ranked = sorted(session.stage_seconds.items(), key=lambda item: -item[1])
            current["stage_seconds"] = {name: round(seconds, 2) for name, seconds in ranked}
        if self.missing:  # finished images this session computed gained methods or columns for
            whole = finished_images(rows, methods, self.added)
            current["extended"] = len(whole & set(self.missing))
        counted = current["images"] > 0 or current.get("extended") or not self.earlier.runs
        results = {
            "model": model,
            "n_images": len(first),
            **({EXTENSION: self.extension} if self.base_methods != list(methods) or self.added else {}),
            "n_requested": max(n_requested, len(first)),  # an extension of the first images asks for fewer
            # the data's images, --limit or not: what the results page counts a run's coverage against
            **({"n_available": max(n_available, len(first))} if n_available is not None else {}),
            "settings": settings,
            "methods": summaries,
            "top1_accuracy": summarize(correct) if correct else None,
            "skipped": {"count": len(skipped), "images": skipped, "invalid_boxes": invalid_boxes},
            "counterfactual": self._counterfactual(),
            "sanity": self._sanity(),
            "paired": _paired(rows, methods),
            "mean_curves": self._mean_curves(),
            "wall_time_s": round(self.earlier.seconds + seconds, 2),
            "runs": self.earlier.runs + ([current] if counted else []),
        }
        write_atomically(self.path(RESULTS), json.dumps(results, indent=2, allow_nan=True))
        write_atomically(self.path(REPORT), markdown_report(results))
        return results

    def _counterfactual(self) -> dict[str, Any]:
        groups: dict[str, dict[str, dict[str, list[float]]]] = {}
        for row in read_csv(self.path(COUNTERFACTUAL)):
            group = groups.setdefault(row["method"], {}).setdefault(row["intervention"], {})
            for metric in CHANGE_METRICS:
                group.setdefault(metric, []).append(float(row[metric]))
        return {
            m: {i: {k: summarize(v) for k, v in metrics.items()} for i, metrics in by.items()}
            for m, by in groups.items()
        }

    def _sanity(self) -> dict[str, list[dict[str, Any]]]:
        sanity: dict[str, list[dict[str, Any]]] = {}
        for row in read_csv(self.path(SANITY)):
            sanity.setdefault(row["method"], []).append(
                {"stage": int(row["stage"]), "layer": row["layer"]} | {k: float(row[k]) for k in SIMILARITIES}
            )
        return sanity

    def _mean_curves(self) -> dict[str, Any]:
        """Each method's mean deletion and insertion curve (float64 sums of the stored curves)."""
        sums: dict[str, dict[str, list[float]]] = {}
        counts: dict[str, dict[str, int]] = {}
        for row in read_csv(self.path(CURVES)):
            values = [float(v) for v in row["values"].split()]
            kinds = sums.setdefault(row["method"], {})
            total = kinds.get(row["kind"])
            kinds[row["kind"]] = values if total is None else [a + b for a, b in zip(total, values, strict=True)]
            per_kind = counts.setdefault(row["method"], {})
            per_kind[row["kind"]] = per_kind.get(row["kind"], 0) + 1
        return {
            method: {kind: [v / counts[method][kind] for v in total] for kind, total in kinds.items()}
            | {"n": counts[method].get("deletion", 0)}
            for method, kinds in sums.items()
        }


def _compared(settings: dict[str, Any], gained: Sequence[str]) -> dict[str, Any]:
    """What must match on resume; without the methods or metrics the resumed run only gains (it may
    gain methods and metrics, never lose one)."""
    compared = comparable(settings)
    compared.pop(EXTENSION, None)  # the store's own record, not a setting
    for key in gained:
        compared.pop(key, None)
    return compared


def saved_settings(out: str | Path, resume: bool) -> dict[str, Any]:
    """The settings of the run being resumed in ``out`` (empty when not resuming)."""
    path = Path(out) / SETTINGS
    return dict(read_json(path)) if resume and path.exists() else {}


def refresh_statistics(out: str | Path) -> bool:
    """Recompute the paired differences of ``results.json`` from the rows (with today's interval rule;
    no model runs) and rewrite ``results.md`` (whose intervals are computed as it is written);
    everything else is kept. For committed run folders after a change to the statistics. Returns
    whether a file changed."""
    folder = Path(out)
    results = read_results(folder / RESULTS)
    methods = list(results["methods"])
    base = settings_extension(folder) or {"methods": methods}
    rows = finished_rows(folder, base["methods"], added_columns(folder))
    results["paired"] = _paired(rows, methods)
    text, report = json.dumps(results, indent=2, allow_nan=True), markdown_report(results)
    changed = (folder / RESULTS).read_text() != text or (folder / REPORT).read_text() != report
    write_atomically(folder / RESULTS, text)
    write_atomically(folder / REPORT, report)
    return changed


def _paired(rows: list[dict[str, str]], methods: Sequence[str]) -> dict[str, Any]:
    """MI-CAM minus each other method, image by image (empty without MI-CAM or without rows)."""
    metrics = [m for m in COMPARED_METRICS if rows and m in rows[0]]
    if PAIRED_FOCUS not in methods or len(methods) < 2 or not metrics:
        return {}
    return {"focus": PAIRED_FOCUS, "differences": paired_differences(rows, PAIRED_FOCUS, metrics)}


def read_results(path: Path) -> dict[str, Any]:
    """A run's results.json, or a ValueError naming the file and what is wrong with it."""
    results = read_json(path)
    missing = [] if not isinstance(results, dict) else [k for k in ("model", "n_images", "methods") if k not in results]
    if not isinstance(results, dict) or missing or not isinstance(results["methods"], dict):
        found = f"a JSON {type(results).__name__}" if not isinstance(results, dict) else f"no {missing or 'methods'}"
        raise ValueError(f"{path} is not a micam evaluate results.json ({found}); move it out of the way")
    return results
