"""The one-line device description every report carries (results.json sessions, benchmark tables)."""

from __future__ import annotations

import platform

import torch


def device_name(device: torch.device | str) -> str:
    """ "NVIDIA H100 80GB HBM3" for a CUDA device, "CPU x86_64, 2 threads" for the CPU (with the thread
    count torch uses, since CPU timings scale with it)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
