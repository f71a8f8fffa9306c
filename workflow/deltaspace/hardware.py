"""Device and precision choices made from the hardware actually present, never assumed."""
from __future__ import annotations

import contextlib
import functools
import os

import torch

from .gpu_slots import claim_device

PRECISIONS = ("auto", "fp32", "bf16")


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """AMX (Intel Sapphire Rapids+) or AVX512-BF16 run bf16 matmuls natively; elsewhere bf16 is emulated and slow."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("amx_bf16", "avx512_bf16"))


def machine_description(device: torch.device) -> str:
    """What a measured figure came from: the GPU's name, or the CPU model with its bf16 support."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "unknown CPU")
    except OSError:
        name = "unknown CPU"
    return f"{name} ({'fast' if cpu_has_fast_bf16() else 'no fast'} bf16)"


def resolve_device(setting: str = "auto") -> torch.device:
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if setting.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={setting!r} but no CUDA device is visible; use device: auto or cpu")
    return torch.device(setting)


def resolve_precision(setting: str, device: torch.device) -> str:
    if setting not in PRECISIONS:
        raise ValueError(f"precision={setting!r}: allowed are {', '.join(PRECISIONS)}")
    if setting != "auto":
        return setting
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_fast_bf16() else "fp32"


def autocast(precision: str, device: torch.device):
    """bf16 mixed precision (weights and optimizer stay fp32), or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def configure_threads(threads: int | None) -> None:
    """Snakemake passes each job its thread budget; torch would otherwise take every core per job."""
    if threads:
        torch.set_num_threads(int(threads))
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def job_setup(spec: dict, threads: int | None) -> tuple[torch.device, str]:
    """Every stage's first step: its thread budget, a GPU of its own, then the device and precision it asks for."""
    configure_threads(threads)
    claim_device(spec.get("device", "auto"))  # before resolve_device: the first CUDA call fixes the visible GPUs
    device = resolve_device(spec.get("device", "auto"))
    return device, resolve_precision(spec.get("precision", "auto"), device)
