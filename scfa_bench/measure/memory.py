"""Memory of one measured call: torch's peak allocation and NVML's device-wide used memory.

Neither ever raises: on a CPU or without NVML the values are None (empty in the CSV).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import torch

MIB = 1024 * 1024


def peak_allocated_mib(fn: Callable[[], object], device: str) -> float | None:
    """Peak bytes torch held allocated during one call of `fn` (inputs included), in MiB.

    On the CPU there is no allocator to ask: `fn` is not called and the result is None.
    """
    if device != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / MIB


@cache
def _nvml_ready() -> tuple[bool, str]:
    try:
        import pynvml

        pynvml.nvmlInit()
        return True, ""
    except Exception as exc:  # any NVML failure means "not available", never a crash
        return False, f"{type(exc).__name__}: {exc}"


def nvml_status() -> tuple[bool, str]:
    """(True, "") when NVML can be queried, else (False, reason)."""
    return _nvml_ready()


def nvml_handle(device_index: int | None = None):
    """The NVML handle of the current CUDA device (matched by UUID), or None."""
    if not _nvml_ready()[0] or not torch.cuda.is_available():
        return None
    try:
        import pynvml

        index = torch.cuda.current_device() if device_index is None else device_index
        uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
        if uuid is not None:
            try:
                return pynvml.nvmlDeviceGetHandleByUUID(f"GPU-{uuid}")
            except Exception:
                pass  # MIG or unusual UUID text: fall back to the index
        return pynvml.nvmlDeviceGetHandleByIndex(index)
    except Exception:
        return None


def nvml_used_mib() -> float | None:
    """Device-wide used memory from NVML in MiB (all processes, torch's cache included)."""
    handle = nvml_handle()
    if handle is None:
        return None
    try:
        import pynvml

        return pynvml.nvmlDeviceGetMemoryInfo(handle).used / MIB
    except Exception:
        return None
