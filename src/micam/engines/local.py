"""The local engine: every shard in this process, in order, with images decoded ahead in loader
worker processes (``settings.loader_workers``; none where there is one core)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from torch.utils.data import DataLoader

from micam.evaluation.datasets import Sample
from micam.evaluation.step import Step
from micam.evaluation.work import Decoded, Images, Job, ShardResult, run_shard
from micam.runtime import device_name


def _as_list(items: list[Decoded]) -> list[Decoded]:
    return items  # a shard stays a list: unreadable images and varying box counts are not stackable


class LocalEngine:
    """Runs the shards with the caller's own ``Step`` (its model already loaded)."""

    def __init__(self, step: Step) -> None:
        self.step = step

    def run(
        self, job: Job, shards: Sequence[Sequence[Sample]], on_result: Callable[[ShardResult], None]
    ) -> list[dict[str, Any]]:
        samples = [sample for shard in shards for sample in shard]
        size = max((len(shard) for shard in shards), default=1)
        settings = job.settings
        workers = settings.loader_workers
        if workers is None:
            workers = 0 if (os.cpu_count() or 1) < 2 or len(samples) <= size else 2
        images = Images(samples, self.step.loaded, job.geometry, settings)
        loader = DataLoader(
            images,
            batch_size=size,
            shuffle=False,
            num_workers=workers,
            collate_fn=_as_list,
            pin_memory=self.step.device.type == "cuda",
        )
        warm = False
        for decoded in loader:
            result = run_shard(self.step, decoded, job, warm)
            warm = warm or result.images > len(result.failures)  # the step warmed up on a readable shard
            result.device_name = device_name(self.step.device)
            on_result(result)
        return []
