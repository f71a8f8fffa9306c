"""The workstation GPU slot pool, without a GPU: CUDA_VISIBLE_DEVICES (or a stand-in nvidia-smi) says which
devices exist, and real processes compete for their lock files."""
from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO
from deltaspace import gpu_slots
from deltaspace.gpu_slots import GpuSlotTimeout, acquire_slot, claim_device, visible_devices

# Claims a slot the way every stage does (first thing), reports it, and holds it until stdin closes.
HOLDER = """
import os, sys
from deltaspace.gpu_slots import claim_device
device = claim_device("auto")
print("claimed", device, os.environ.get("CUDA_VISIBLE_DEVICES"), flush=True)
sys.stdin.read()
"""


def job_env(visible: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in (gpu_slots.CLAIMED_ENV, gpu_slots.SLOTS_DIR_ENV)}
    return {**env, "CUDA_VISIBLE_DEVICES": visible, "PYTHONPATH": str(REPO / "workflow")}


def start(workdir, visible: str, script: str = HOLDER) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", script], cwd=workdir, env=job_env(visible), text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def claimed(process: subprocess.Popen, timeout: float = 30) -> tuple[str, str] | None:
    """(device, CUDA_VISIBLE_DEVICES) the process reports, or None if it has not claimed one within timeout."""
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    if not ready:
        return None
    line = process.stdout.readline().split()
    assert line and line[0] == "claimed", (line, process.stderr.read() if process.poll() is not None else "")
    return line[1], line[2]


def stop(*processes: subprocess.Popen) -> None:
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
        for stream in (process.stdin, process.stdout, process.stderr):
            stream.close()


def test_concurrent_jobs_get_different_devices(tmp_path):
    holders = [start(tmp_path, "3,5,6") for _ in range(3)]
    try:
        got = [claimed(p) for p in holders]
    finally:
        stop(*holders)
    assert sorted(device for device, _ in got) == ["3", "5", "6"]
    assert all(visible == device for device, visible in got)  # each job sees only its own device
    assert sorted(p.name for p in (tmp_path / ".deltaspace" / "gpu_slots").iterdir()) == [
        "gpu3.lock", "gpu5.lock", "gpu6.lock"]


def test_a_job_waits_while_all_slots_are_held_and_takes_a_killed_holders_slot(tmp_path):
    first, second = start(tmp_path, "0,1"), start(tmp_path, "0,1")
    waiting = None
    try:
        devices = {claimed(first)[0]: first, claimed(second)[0]: second}
        assert set(devices) == {"0", "1"}
        waiting = start(tmp_path, "0,1")
        assert claimed(waiting, timeout=2) is None  # both slots are held: it waits
        os.kill(devices["1"].pid, signal.SIGKILL)  # the OS drops the dead holder's lock
        assert claimed(waiting) == ("1", "1")
    finally:
        stop(first, second, *([waiting] if waiting else []))


def test_the_waiting_job_says_who_holds_the_slots(tmp_path):
    holder = start(tmp_path, "0")
    waiting = None
    try:
        assert claimed(holder) == ("0", "0")
        waiting = start(tmp_path, "0")
        deadline = time.monotonic() + 30
        message = ""
        while "waiting" not in message and time.monotonic() < deadline:
            ready, _, _ = select.select([waiting.stderr], [], [], 1)
            if ready:
                message += waiting.stderr.readline()
        assert f"held by process(es) ['{holder.pid}']" in message and "waiting for one to free up" in message
    finally:
        stop(holder, *([waiting] if waiting else []))


def test_a_timeout_gives_a_clear_error_naming_the_holders(tmp_path):
    holder = start(tmp_path, "0")
    try:
        assert claimed(holder) == ("0", "0")
        held = rf"all 1 device\(s\) \['0'\] are held by process\(es\) \['{holder.pid}'\]"
        with pytest.raises(GpuSlotTimeout, match=held):
            acquire_slot(["0"], tmp_path / ".deltaspace" / "gpu_slots", timeout=0.2, log=lambda m: None)
    finally:
        stop(holder)


def test_a_holders_child_process_uses_the_same_device_without_waiting(tmp_path):
    child = "from deltaspace.gpu_slots import claim_device; print(claim_device('auto'))"
    script = HOLDER.replace("sys.stdin.read()", f"import subprocess; print(subprocess.run([sys.executable, '-c', "
                                                  f"{child!r}], capture_output=True, text=True, timeout=60).stdout, "
                                                  f"flush=True)\nsys.stdin.read()")
    holder = start(tmp_path, "2", script)
    try:
        assert claimed(holder) == ("2", "2")
        assert holder.stdout.readline().strip() == "None"  # nothing claimed, nothing awaited: it inherits GPU 2
    finally:
        stop(holder)


def test_job_setup_claims_a_slot_before_choosing_the_device(tmp_path):
    holder = start(tmp_path, "4,7")
    script = ("import os; from deltaspace.hardware import job_setup\n"
              "job_setup({'device': %r, 'precision': 'fp32'}, 1)\n"
              "print('claimed', os.environ.get('DELTASPACE_GPU_SLOT'),"
              " os.environ['CUDA_VISIBLE_DEVICES'].replace(',', '+'), flush=True)")
    try:
        assert claimed(holder) == ("4", "4")
        auto, cpu = start(tmp_path, "4,7", script % "auto"), start(tmp_path, "4,7", script % "cpu")
        try:
            assert claimed(auto, timeout=120) == ("7", "7")
            assert claimed(cpu, timeout=120) == ("None", "4+7")  # a CPU job takes no slot and keeps the env
        finally:
            stop(auto, cpu)
    finally:
        stop(holder)


@pytest.mark.parametrize("setting", ["cpu", "cuda:1"])
def test_cpu_and_an_explicit_device_take_no_slot(tmp_path, monkeypatch, setting):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert claim_device(setting, slots_dir=tmp_path) is None
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1" and not list(tmp_path.iterdir())


@pytest.mark.parametrize("listed, expected", [
    ("0,1", ["0", "1"]), (" 2 , 3 ", ["2", "3"]), ("", []), ("-1", []), ("2,-1,3", ["2"]),
    ("GPU-8f1c,GPU-22aa", ["GPU-8f1c", "GPU-22aa"]),
])
def test_visible_devices_read_cuda_visible_devices_as_cuda_does(listed, expected):
    assert visible_devices({"CUDA_VISIBLE_DEVICES": listed}) == expected


def test_without_cuda_visible_devices_nvidia_smi_counts_the_gpus(tmp_path, monkeypatch):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 (UUID: GPU-a)'\necho 'GPU 1: NVIDIA H100 (UUID: GPU-b)'\n"
                    "echo '  MIG 1g.10gb     Device  0: (UUID: MIG-c)'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert visible_devices({}) == ["0", "1"]


def test_no_gpu_means_no_slot(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert claim_device("auto", slots_dir=tmp_path) is None and not list(tmp_path.iterdir())


def test_a_slurm_job_keeps_the_gpus_slurm_gave_it(tmp_path, monkeypatch):
    """Every node's job sees CUDA_VISIBLE_DEVICES=0: a lock in the shared workdir would serialise the cluster."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setenv("SLURM_JOB_GPUS", "3")
    assert claim_device("auto", slots_dir=tmp_path) is None
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0" and not list(tmp_path.iterdir())
