"""A model job imports only what it uses (issue 20): no PEFT, Trainer utilities, matplotlib, scipy or sklearn
when the stage modules load, and no Trainer utilities, matplotlib or sklearn once a job has built its DETs.
PEFT is a job-time import of the LoRA DET alone (dets/lora attaches through peft.inject_adapter_in_model);
scipy arrives with the backbone itself (transformers' modeling_utils imports its losses, which import scipy),
so it is as unavoidable there as in any script that loads the model."""
from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO

STAGES = ("original", "decompose", "optimize", "transfer", "landscape")
HEAVY = ("peft", "transformers.trainer_utils", "matplotlib", "scipy", "sklearn")


def imported_after(code: str) -> list[str]:
    """Which of HEAVY a fresh interpreter holds after running `code`."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_stage_modules_import_none_of_the_heavy_packages():
    assert imported_after(f"import {', '.join('deltaspace.' + s for s in STAGES)}") == []


def test_a_built_job_holds_peft_only_for_lora(tiny_model_dirs):
    spec = {"backbone": {"name_or_path": str(tiny_model_dirs["encoder"])}, "init_seed": 42, "device": "cpu",
            "precision": "fp32"}
    dets = {"adapter": {"method": "adapter", "bottleneck": 2}, "prefix": {"method": "prefix", "length": 2, "hidden": 4},
            "lora": {"method": "lora", "rank": 2, "alpha": 4}}
    for det, det_spec in dets.items():
        code = (f"import deltaspace.original\nfrom deltaspace.job import start_job\n"
                f"start_job({json.dumps(spec)}, 1, dets={{{det!r}: {json.dumps(det_spec)}}})")
        held = [m for m in imported_after(code) if m != "scipy"]  # scipy: the backbone's own (see the docstring)
        assert held == (["peft"] if det == "lora" else []), det
