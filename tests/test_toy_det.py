"""Adding a DET touches its folder and one registry line: a toy DET written into a copy of the workflow, exactly
as a user would add it, goes through config validation, stage 1 on a tiny model, the landscape's stacked
scoring and a dry run of the whole DAG, with no other file changed. Also: the grid's fallback for a DET that
declares no vmap support."""
from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import torch
import yaml

from conftest import REPO, load_config, planned_jobs, snakemake

TOY_FILES = {
    "__init__.py": '''\
        """A toy DET, a trainable bias on one Linear's output: config.py declares it, model.py implements it."""
        ''',
    "config.py": '''\
        """The toy DET's declaration (torch-free)."""
        from __future__ import annotations

        from dataclasses import dataclass

        from ...options import option
        from ..config import DetConfig


        @dataclass(kw_only=True)
        class ToyConfig(DetConfig):
            """A trainable bias added to the output of one Linear layer."""

            method = "toy"
            not_in_peft = "it is a toy"

            module: str = option("auto", "regex of the Linear whose output gets the bias; auto: the last sub-layer "
                                         "output of the backbone's profile", minLength=1)
            init: float = option(0.0, "the bias's initial value")
        ''',
    "model.py": '''\
        """The toy DET's torch code."""
        from __future__ import annotations

        import torch
        from torch import nn

        from ..architectures import matching_modules, profile_for, replace_module
        from ..base import DeltaTuning
        from .config import ToyConfig


        class Biased(nn.Module):
            def __init__(self, base: nn.Linear, init: float):
                super().__init__()
                self.base = base
                self.bias = nn.Parameter(torch.full((base.out_features,), float(init)))

            @property
            def weight(self):
                return self.base.weight

            def forward(self, x):
                return self.base(x) + self.bias


        class Toy(DeltaTuning):
            config = ToyConfig

            def attach(self, backbone) -> None:
                pattern = self.spec["module"]
                patterns = profile_for(backbone.model).sublayer_outputs if pattern == "auto" else pattern
                name, module = matching_modules(backbone.model, patterns, nn.Linear)[-1]
                replace_module(backbone.model, name, Biased(module, self.spec["init"]))
        ''',
}
REGISTRY_END = '    "finetune",\n)\n'

# Stage 1 of the toy DET and the landscape's stacked scores, run by the copy's package in a fresh interpreter.
STAGE1_SCRIPT = '''\
import sys
from pathlib import Path

import torch

copy, tests, model_dir, root = sys.argv[1:]
sys.path.insert(0, tests)
import deltaspace
from deltaspace.backbones import load_backbone
from deltaspace.dets import METHODS, build_delta_model
from deltaspace.grid_eval import reference_scores, stacked_scores, tokenise, tokenise_by_length
from test_dets import EXAMPLES
from test_original import train_tiny_stage1

assert Path(deltaspace.__file__).is_relative_to(copy), deltaspace.__file__
assert "toy" in METHODS and METHODS["toy"].vmap
train_tiny_stage1(model_dir, {"toy": {"method": "toy"}}, Path(root), steps=2, tasks=("a",))
model = build_delta_model(load_backbone({"name_or_path": model_dir}), {"method": "toy", "init": 0.1}, 42)
assert model.num_parameters == 32 and torch.equal(model.vector(), torch.full((32,), 0.1))
cpu = torch.device("cpu")
vectors = model.vector() + 0.5 * torch.randn(3, model.num_parameters, generator=torch.Generator().manual_seed(0))
reference = reference_scores(model, vectors, 3, tokenise(model.backbone, EXAMPLES, "t", cpu, 8))
stacked = stacked_scores(model, vectors, 3, tokenise_by_length(model.backbone, EXAMPLES, "t", cpu), "fp32", cpu)
torch.testing.assert_close(stacked, reference, rtol=1e-4, atol=1e-4)
'''


def copy_with_toy_det(root: Path) -> Path:
    """This checkout's Snakefile, config/ and workflow/ copied, plus the toy DET's folder and its registry line."""
    root.mkdir()
    for name in ("Snakefile", "config", "workflow"):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(source, root / name)
    dets = root / "workflow" / "deltaspace" / "dets"
    (dets / "toy").mkdir()
    for name, text in TOY_FILES.items():
        (dets / "toy" / name).write_text(textwrap.dedent(text))
    registry = (dets / "__init__.py").read_text()
    assert registry.count(REGISTRY_END) == 1, "the registry's last line moved: update REGISTRY_END"
    (dets / "__init__.py").write_text(registry.replace(REGISTRY_END, '    "finetune",\n    "toy",\n)\n'))
    return root


def changed_files(copy: Path) -> set[str]:
    """Files of the copy that this checkout lacks or holds otherwise."""
    changed = set()
    for path in copy.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            original = REPO / path.relative_to(copy)
            if not original.is_file() or not filecmp.cmp(path, original, shallow=False):
                changed.add(path.relative_to(copy).as_posix())
    return changed


def test_a_toy_det_needs_only_its_folder_and_a_registry_line(tmp_path, tiny_model_dirs, monkeypatch):
    copy = copy_with_toy_det(tmp_path / "checkout")
    assert changed_files(copy) == {"workflow/deltaspace/dets/__init__.py",
                                   *(f"workflow/deltaspace/dets/toy/{name}" for name in TOY_FILES)}
    monkeypatch.setenv("PYTHONPATH", str(copy / "workflow"))  # snakemake and the stage-1 run import the copy's package

    # Config validation: the toy's options come from its declaration, so a typo is named with what is allowed.
    workdir = tmp_path / "work"
    workdir.mkdir()
    config = load_config("smoke.yaml")
    config["dets"]["toy"] = {"method": "toy", "modul": "dense"}
    (workdir / "bad.yaml").write_text(yaml.safe_dump(config))
    bad = snakemake(workdir, "-n", "--configfile", "bad.yaml", snakefile=copy / "Snakefile")
    assert bad.returncode != 0
    assert ("Invalid configuration: config key 'dets.toy.modul' is not allowed; allowed keys in dets.toy: "
            "expected_params, init, lr, method, module") in bad.stdout, bad.stdout

    # A dry run of the whole DAG plans the toy's jobs beside the other DETs'.
    config["dets"]["toy"] = {"method": "toy", "init": 0.5}
    (workdir / "toy.yaml").write_text(yaml.safe_dump(config))
    dry = snakemake(workdir, "-n", "-p", "--configfile", "toy.yaml", snakefile=copy / "Snakefile")
    assert dry.returncode == 0, dry.stdout
    without = snakemake(workdir, "-n", "--configfile", str(REPO / "config" / "smoke.yaml"))
    assert without.returncode == 0, without.stdout
    assert sum(planned_jobs(dry.stdout).values()) > sum(planned_jobs(without.stdout).values())
    assert "/toy/" in dry.stdout

    # Stage 1 on a tiny model, and the landscape's stacked (vmap) scores against the one-by-one reference.
    run = subprocess.run([sys.executable, "-c", STAGE1_SCRIPT, str(copy), str(REPO / "tests"),
                          str(tiny_model_dirs["encoder"]), str(tmp_path / "stage1")],
                         env={**os.environ, "PYTHONPATH": str(copy / "workflow")}, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, timeout=300)
    assert run.returncode == 0, run.stdout
    assert list((tmp_path / "stage1").rglob("*.safetensors")), "stage 1 wrote no solution"


def test_a_det_without_vmap_is_scored_one_vector_per_pass(tiny_model_dirs, monkeypatch):
    from deltaspace import grid_eval
    from deltaspace.backbones import load_backbone
    from deltaspace.dets import METHODS, build_delta_model
    from test_dets import EXAMPLES, TINY_SPECS

    model = build_delta_model(load_backbone({"name_or_path": str(tiny_model_dirs["encoder"])}), TINY_SPECS["lora"], 3)
    vectors = model.vector() + 0.3 * torch.randn(4, model.num_parameters, generator=torch.Generator().manual_seed(1))
    cpu = torch.device("cpu")
    reference = grid_eval.reference_scores(model, vectors, 4, grid_eval.tokenise(model.backbone, EXAMPLES, "t", cpu, 8))
    monkeypatch.setattr(METHODS["lora"], "vmap", False)
    monkeypatch.setattr(grid_eval, "vmap", None)  # any call to vmap would fail
    devset = grid_eval.tokenise_by_length(model.backbone, EXAMPLES, "t", cpu)
    stacked = grid_eval.stacked_scores(model, vectors, 4, devset, "fp32", cpu)
    torch.testing.assert_close(stacked, reference, rtol=1e-4, atol=1e-4)
