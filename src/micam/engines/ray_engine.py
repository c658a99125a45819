"""The Ray engine: shards of images on Ray actors, each with the model loaded once, on this machine
(a local Ray runtime is started) or a cluster (``address="auto"`` or ``"ray://HOST:PORT"``).

The caller alone writes the run folder: an actor returns a shard's rows and the caller appends them as
shards complete, so an actor that dies mid-shard loses nothing that was written and its shard is given
to another actor (a new one is started in its place); no image is written twice. A GPU is given to
each actor where the cluster has them (one actor per GPU by default), else one CPU core each.
"""

from __future__ import annotations

import importlib
import os
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from micam.evaluation.datasets import Sample
from micam.evaluation.settings import EvaluationSettings
from micam.evaluation.step import Step
from micam.evaluation.work import Images, Job, ShardResult, load_model, run_shard
from micam.runtime import device_name, tune_allocator

ray: Any
try:
    ray = importlib.import_module("ray")
except ImportError:  # pragma: no cover - the optional extra
    ray = None

Shards = Sequence[Sequence[Sample]]
RESTARTS_PER_WORKER = 3  # replacement actors allowed per requested worker before the run gives up


class Worker:
    """One actor: loads the model once, then turns shards into rows (``micam.evaluation.work``)."""

    def __init__(self, job: Job, name: str) -> None:
        tune_allocator()  # an actor is a process of its own: the command line's allocator settings too
        settings = job.settings
        cuda = torch.cuda.is_available() and settings.device in ("auto", "cuda")
        self.device = torch.device("cuda" if cuda else "cpu")
        self.loaded = load_model(settings, self.device)
        self.step = Step(settings, self.loaded, self.device, job.has_boxes)
        self.job, self.name, self.warm = job, name, False

    def run(self, shard: Sequence[Sample]) -> ShardResult:
        images = Images(shard, self.loaded, self.job.geometry, self.job.settings)
        decoded = [images[i] for i in range(len(images))]
        result = run_shard(self.step, decoded, self.job, self.warm)
        self.warm = self.warm or result.images > len(result.failures)
        result.worker, result.device_name = self.name, device_name(self.device)
        result.extra = {"pid": os.getpid()}
        return result


def _absolute_files(settings: EvaluationSettings) -> dict[str, Any]:
    """The settings naming local files (a model file, a checkpoint, a label list), made absolute."""
    changed: dict[str, Any] = {}
    file, colon, factory = settings.model.rpartition(":")
    if colon and file.endswith(".py") and Path(file).is_file():
        changed["model"] = f"{Path(file).resolve()}:{factory}"
    for key in ("weights", "labels"):
        value = getattr(settings, key)
        if isinstance(value, str) and Path(value).is_file():
            changed[key] = str(Path(value).resolve())
    return changed


class RayEngine:
    """``address``: None starts a local Ray runtime (shut down afterwards), "auto" or "ray://HOST:PORT"
    joins a running cluster; ``workers``: actors (default one per GPU, else one per CPU core)."""

    def __init__(
        self, address: str | None = None, workers: int | None = None, log: Callable[[str], None] = print
    ) -> None:
        if ray is None:
            raise ValueError("--engine ray needs Ray: pip install 'micam[ray]' (or pip install ray)")
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.address, self.workers, self.log = address, workers, log

    def run(self, job: Job, shards: Shards, on_result: Callable[[ShardResult], None]) -> list[dict[str, Any]]:
        # Workers may start elsewhere (another node, another folder): paths go as absolute paths.
        shards = [[replace(sample, path=Path(sample.path).resolve()) for sample in shard] for shard in shards]
        job = replace(job, settings=replace(job.settings, **_absolute_files(job.settings)))
        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        try:
            return self._run(job, shards, on_result)
        finally:
            if started_here:
                ray.shutdown()

    def _run(self, job: Job, shards: Shards, on_result: Callable[[ShardResult], None]) -> list[dict[str, Any]]:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0)) if job.settings.device != "cpu" else 0
        count = self.workers or (gpus or max(1, int(resources.get("CPU", 1))))
        actor_class = ray.remote(num_cpus=0 if gpus else 1, num_gpus=1 if gpus else 0, max_restarts=0)(Worker)
        names = iter(f"worker-{i}" for i in range(10**6))
        idle = deque(actor_class.remote(job, next(names)) for _ in range(min(count, len(shards))))
        queue = deque(range(len(shards)))
        running: dict[Any, tuple[Any, int]] = {}  # future -> (actor, shard index)
        records: dict[str, dict[str, Any]] = {}
        restarts = RESTARTS_PER_WORKER * count
        try:
            while queue or running:
                while queue and idle:
                    actor, index = idle.popleft(), queue.popleft()
                    running[actor.run.remote(shards[index])] = (actor, index)
                (future,), _ = ray.wait(list(running), num_returns=1)
                actor, index = running.pop(future)
                try:
                    result: ShardResult = ray.get(future)
                except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as error:
                    if restarts == 0:
                        raise RuntimeError(f"Ray workers keep dying ({type(error).__name__}); last: {error}") from error
                    restarts -= 1
                    queue.appendleft(index)  # nothing of it was written: it runs again elsewhere
                    replacement = actor_class.remote(job, next(names))
                    self.log(f"a Ray worker died ({type(error).__name__}); shard {index} goes to a new worker")
                    idle.append(replacement)
                    continue
                idle.append(actor)
                on_result(result)
                record = records.setdefault(
                    result.worker,
                    {"worker": result.worker, "device_name": result.device_name, "images": 0, "seconds": 0.0},
                )
                record["images"] += result.images
                record["seconds"] = round(record["seconds"] + result.seconds, 2)
        finally:
            for actor in [*idle, *(actor for actor, _ in running.values())]:
                ray.kill(actor)
        return list(records.values())
