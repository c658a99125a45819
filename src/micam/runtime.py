"""Where and how long a run goes: the device's one-line name, a dependency-free progress line (stderr),
the output folder a command may write to, what a full disk means for a run, and the memory allocator's
settings that the command line runs with."""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import sys
import time
from pathlib import Path
from typing import TextIO

import torch


def device_name(device: torch.device | str) -> str:
    """ "NVIDIA H100 80GB HBM3" for a CUDA device, "CPU x86_64, 2 threads" for the CPU (with the thread
    count torch uses, since CPU timings scale with it). Every report carries it (results.json sessions,
    benchmark tables)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    threads = torch.get_num_threads()
    return f"CPU {platform.processor() or platform.machine()}, {threads} thread{'' if threads == 1 else 's'}"


def env_switch(name: str, default: bool) -> bool:
    """A yes/no environment switch: 0/false/no/off turn it off, any other value on, unset or empty
    leaves ``default``."""
    value = os.environ.get(name, "").strip().lower()
    return default if not value else value not in ("0", "false", "no", "off")


# glibc's mallopt parameters (malloc.h) and the values the command line sets.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD = 1 << 30  # blocks up to 1 GiB come from the heap, and are reused there
_TRIM_THRESHOLD = (1 << 31) - 1  # freed heap memory stays with the process (up to 2 GiB at the top)


def tune_allocator() -> bool:
    """Let glibc keep and reuse large freed blocks; True where it was done (Linux with glibc).

    By default glibc maps every block over 32 MiB afresh and unmaps it when freed, so each batched
    forward pass page-faults through all of its activations again: at batch 16-64 that is a third to
    a half of a MobileNetV2 forward pass on the CPU (``benchmarks/allocator.py``). The command line calls
    this first; ``MICAM_TUNE_ALLOCATOR=0`` leaves glibc's defaults. No computed value changes, only
    where memory comes from; the process keeps the memory it freed for reuse instead of returning it."""
    if not env_switch("MICAM_TUNE_ALLOCATOR", True) or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # musl and other C libraries: their own allocators, left alone
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) == 1 and mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1)


def format_seconds(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """``advance(n)`` after each unit of work; redraws in place on a terminal, else prints a line
    at most every ``every`` seconds (logs stay short)."""

    def __init__(self, total: int, label: str, stream: TextIO | None = None, every: float = 15.0) -> None:
        self.total, self.label, self.every = total, label, every
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self.started = time.perf_counter()
        self._last_print = -float("inf")
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def advance(self, count: int = 1, note: str = "") -> None:
        self.done += count
        now = time.perf_counter()
        if self._tty or now - self._last_print >= self.every or self.done >= self.total:
            self._last_print = now
            self.stream.write(("\r" if self._tty else "") + self.line(note) + ("" if self._tty else "\n"))
            self.stream.flush()

    def line(self, note: str = "") -> str:
        elapsed = time.perf_counter() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else float("nan")
        share = 100 * self.done / self.total if self.total else 100.0
        eta = format_seconds(left) if left == left else "?"
        text = (
            f"[{self.label}] {self.done}/{self.total} ({share:.1f}%) {rate:.2f}/s "
            f"elapsed {format_seconds(elapsed)} ETA {eta}"
        )
        return f"{text} {note}".rstrip()

    def close(self) -> None:
        if self._tty:
            self.stream.write("\n")
            self.stream.flush()


class DiskFull(RuntimeError):
    """The disk (or the user's quota) filled up mid-run; the message says what was saved and how to go on."""


def is_disk_full(error: BaseException) -> bool:
    """An ``OSError`` that says no space is left on the device or in the quota."""
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)


def output_folder(path: str | Path, option: str = "--out") -> Path:
    """``path`` as a folder this process can write to, created if missing; a clear error otherwise
    (a file of that name, a read-only or forbidden place)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{option} {path} is a file, not a folder; name a folder (it is created if missing)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"{option} {path} cannot be created: {error.strerror or error}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {path} is not writable by this user; choose another folder")
    return path
