"""Engines: where an evaluation's shards of images run. ``local`` (the default) runs them in this
process, decoding ahead in loader workers; ``ray`` runs them on Ray actors, on this machine or a
cluster. Every engine runs the same per-shard work (``micam.evaluation.work``) and hands each shard's
rows back to the caller, who alone writes the run folder; so the rows do not depend on the engine.

An engine is a class with ``run(job, shards, on_result) -> list[worker record]``; ``ENGINES`` maps a
name to where it lives, imported when asked for (Ray is an optional extra: ``pip install micam[ray]``).
"""

from __future__ import annotations

import importlib
from typing import Any

ENGINES = {
    "local": "micam.engines.local:LocalEngine",
    "ray": "micam.engines.ray_engine:RayEngine",
}


def get_engine(name: str, **options: Any) -> Any:
    """An engine by name, built with its ``options`` (the ray engine's ``address`` and ``workers``)."""
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; choose from {', '.join(ENGINES)}")
    module, _, attribute = ENGINES[name].partition(":")
    return getattr(importlib.import_module(module), attribute)(**options)


__all__ = ["ENGINES", "get_engine"]
