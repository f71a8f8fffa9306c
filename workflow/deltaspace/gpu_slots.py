"""One GPU per running job on a multi-GPU workstation: Snakemake counts `gpu` resources but assigns no device.

A job that will use CUDA takes a free slot, one lock file per visible device, with fcntl.flock. The lock is
held for the life of the process, so the OS frees it when the job ends or is killed (even by kill -9). The
job then sees only its device through CUDA_VISIBLE_DEVICES, which must be set before CUDA is initialised.
When every slot is held the job waits for one to free up: `--resources gpu=N` normally keeps Snakemake from
starting more GPU jobs than devices, so a wait means another run or a process outside this workflow holds one.
"""
from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

SLOTS_DIR_ENV = "DELTASPACE_GPU_SLOTS_DIR"
DEFAULT_SLOTS_DIR = Path(".deltaspace") / "gpu_slots"  # relative to the job's working directory
SCHEDULER_GPU_ENVS = ("SLURM_JOB_GPUS", "SLURM_STEP_GPUS")
CLAIMED_ENV = "DELTASPACE_GPU_SLOT"  # set in a holder's environment; its child processes use the same device
POLL_SECONDS = 0.5

_held: dict = {}  # the open lock file of this process's slot: closing it would release the slot


class GpuSlotTimeout(RuntimeError):
    pass


def visible_devices(environ=os.environ) -> list[str]:
    """The devices CUDA would show this process: CUDA_VISIBLE_DEVICES if set, else every GPU nvidia-smi lists."""
    listed = environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        devices = []
        for entry in (part.strip() for part in listed.split(",")):
            if not entry or entry.startswith("-"):  # CUDA stops at the first invalid entry ("-1" hides all)
                break
            devices.append(entry)
        return devices
    return [str(i) for i in range(gpu_count())]


def gpu_count() -> int:
    """How many GPUs the machine has, found without initialising CUDA (that would fix the visible set)."""
    if shutil.which("nvidia-smi"):
        try:
            listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=True)
            return sum(line.startswith("GPU ") for line in listing.stdout.splitlines())
        except (OSError, subprocess.SubprocessError):
            pass
    torch = sys.modules.get("torch")
    if torch is None:
        import torch
    # Counted through NVML, and not cached before CUDA is initialised (torch >= 2.2), so the count stays fresh.
    return torch.cuda.device_count()


def cuda_initialised() -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and torch.cuda.is_initialized()


def slot_file(slots_dir: Path, device: str) -> Path:
    return slots_dir / f"gpu{re.sub(r'[^A-Za-z0-9_-]', '_', device)}.lock"


def holder_pids(slots_dir: Path, devices: list[str]) -> list[str]:
    pids = []
    for device in devices:
        try:
            pids.append(slot_file(slots_dir, device).read_text().strip() or "?")
        except OSError:
            pids.append("?")
    return pids


def try_lock(path: Path):
    """The open file holding an exclusive lock on `path`, or None if another process holds it."""
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")  # who holds it, for the waiting message
    handle.flush()
    return handle


def acquire_slot(devices: list[str], slots_dir: Path, timeout: float | None = None, log=print):
    """(device, open lock file) of the first free device; waits while all are held, up to `timeout` seconds."""
    slots_dir.mkdir(parents=True, exist_ok=True)
    started, told = time.monotonic(), False
    while True:
        for device in devices:
            handle = try_lock(slot_file(slots_dir, device))
            if handle is not None:
                return device, handle
        waited = time.monotonic() - started
        if timeout is not None and waited >= timeout:
            raise GpuSlotTimeout(
                f"no free GPU slot after {waited:.0f} s: all {len(devices)} device(s) {devices} are held by "
                f"process(es) {holder_pids(slots_dir, devices)} (lock files in {slots_dir}); lower "
                f"--resources gpu= to the number of GPUs, or wait for the other run to finish")
        if not told:
            log(f"[gpu_slots] all {len(devices)} GPU slot(s) in {slots_dir} are held by process(es) "
                f"{holder_pids(slots_dir, devices)}; waiting for one to free up")
            told = True
        time.sleep(POLL_SECONDS)


def claim_device(setting: str = "auto", slots_dir: str | Path | None = None, timeout: float | None = None,
                 log=None) -> str | None:
    """For a job about to use CUDA: take a free device's slot and make it the only visible device.

    Returns the device id claimed, or None where the pool does not apply: device cpu or an explicit cuda:N
    (the user's choice wins), no GPU visible, CUDA already initialised, a holder's child process, or a
    cluster job whose GPUs the scheduler already assigned.
    """
    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    if "device" in _held:
        return _held["device"]
    if setting not in ("auto", "cuda"):
        return None
    if os.environ.get(CLAIMED_ENV) and os.environ.get(CLAIMED_ENV) == os.environ.get("CUDA_VISIBLE_DEVICES"):
        return None
    # SLURM confines a job to its own GPUs; a lock in the shared working directory would serialise all nodes.
    if any(os.environ.get(name) for name in SCHEDULER_GPU_ENVS):
        return None
    if cuda_initialised():
        log("[gpu_slots] CUDA was initialised before the job's setup; the device is not assigned by slot")
        return None
    devices = visible_devices()
    if not devices:
        return None
    slots_dir = Path(slots_dir or os.environ.get(SLOTS_DIR_ENV) or DEFAULT_SLOTS_DIR)
    device, handle = acquire_slot(devices, slots_dir, timeout=timeout, log=log)
    _held.update(device=device, handle=handle)
    os.environ["CUDA_VISIBLE_DEVICES"] = device
    os.environ[CLAIMED_ENV] = device
    log(f"[gpu_slots] using GPU {device} (slot {slot_file(slots_dir, device)}, {len(devices)} visible)")
    return device
