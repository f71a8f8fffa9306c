"""Shared by the workflow tests: run snakemake on this checkout in a throwaway working directory."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"
WHEELS_DIR = REPO / "resources" / "wheels"


def load_config(name: str) -> dict:
    return yaml.safe_load((REPO / "config" / name).read_text())


def snakemake(workdir: Path, *args: str, timeout: float = 120, snakefile: Path = SNAKEFILE
              ) -> subprocess.CompletedProcess:
    """snakemake with the interpreter running pytest (so an unactivated venv works); stdout and stderr merged.
    snakefile: another checkout's (tests/test_toy_det.py runs a copy with one DET added)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(snakefile), "--directory", str(workdir),
               *args]
    return subprocess.run(command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout)


def planned_jobs(output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run as {rule: count}, without the total."""
    lines = output.splitlines()
    start = lines.index("Job stats:") + 3  # title, header, rule of dashes
    counts = {}
    for line in lines[start:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    counts.pop("total", None)
    return counts


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory) -> dict[str, Path]:
    """kind -> folder of a tiny random model saved with save_pretrained (tests/tiny_models.py)."""
    from tiny_models import TINY_KINDS, save_tiny

    root = tmp_path_factory.mktemp("tiny_models")
    return {kind: save_tiny(kind, root / kind) for kind in TINY_KINDS}


PAPER_PRESETS = ("paper.yaml", "paper_single_task.yaml")


@pytest.fixture(scope="session")
def paper_crossfit_dir(tmp_path_factory) -> Path:
    """A crossfit_dir holding tiny CrossFit-format folders for every task of the paper's presets."""
    from fixtures.crossfit import write_crossfit_data

    tasks = {task for name in PAPER_PRESETS for task in load_config(name)["tasks"]}
    return write_crossfit_data(tmp_path_factory.mktemp("crossfit"), sorted(tasks))


TINY_DETS = {"lora": {"method": "lora", "rank": 2, "alpha": 4}, "prompt": {"method": "prompt", "length": 2}}


@pytest.fixture(scope="session")
def tiny_stage1(tiny_model_dirs, tmp_path_factory):
    """Stage 1 of two DETs on two toy tasks with a tiny encoder, vectors collected, and a spec for the later
    stages (train task a, target b); returns (root, spec, data_dirs). Tests write their own outputs elsewhere."""
    from test_original import train_tiny_stage1

    root = tmp_path_factory.mktemp("stage1")
    model_dir = str(tiny_model_dirs["encoder"])
    data_dirs, runs = train_tiny_stage1(model_dir, TINY_DETS, root, steps=4)
    from deltaspace.tables import original_table

    original_table([r for rs in runs.values() for r in rs], root / "original.csv")
    spec = {"backbone": {"name_or_path": model_dir}, "dets": TINY_DETS, "init_seed": 42, "precision": "fp32",
            "device": "cpu", "seed": 0,
            "decompose": {"train_tasks": ["a"], "intrinsic_dim": 2, "init": "joint_svd", "lambda": 1.0,
                         "mixing": "paper", "optimizer": "adafactor", "lr": 1e-2, "steps": 4, "batch_size": 4,
                         "eval_every": 2, "eval_batch_size": 8, "dev_examples": 8},
            "optimize": {"lrs": [1e-2, 5e-2], "optimizer": "adafactor", "steps": 2, "batch_size": 4, "eval_every": 2,
                       "eval_batch_size": 8}}
    return root, spec, data_dirs
