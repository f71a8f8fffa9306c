"""PEFT export (round trip through PeftModel.from_pretrained, refusal of DETs PEFT lacks) and the subspace
artifact (save -> load, training a point on a new task, decoding, model card), on tiny models."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from test_dets import EXAMPLES, TINY_SPECS
from test_original import spec_for, write_task
from tiny_models import TINY_KINDS
from transformers import AutoModel, AutoModelForCausalLM, AutoModelForSeq2SeqLM

from conftest import REPO, load_config, planned_jobs, snakemake
from deltaspace import artifact, cli
from deltaspace.backbones import Backbone, load_backbone
from deltaspace.dets import build_delta_model
from deltaspace.export import PEFT_METHODS, ExportError, check_exportable, save_peft_adapter
from deltaspace.io import load_tensors, tensor_digest
from deltaspace.original import train_det
from deltaspace.paths import Decomposition
from deltaspace.subspace import load_subspace, save_subspace
from deltaspace.optimize import optimize
from deltaspace.subspace import Subspace, init_from_joint_svd
from deltaspace.tasks import read_split

AUTO_CLASSES = {"encoder": AutoModel, "seq2seq": AutoModelForSeq2SeqLM, "causal": AutoModelForCausalLM}
ATOL = 1e-5


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models gain nothing from threads, and on a shared 2-core machine extra ones spin (measured 12x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def load_peft(model_dir, kind, folder):
    from peft import PeftModel

    return PeftModel.from_pretrained(AUTO_CLASSES[kind].from_pretrained(model_dir, attn_implementation="sdpa"), folder)


def hf_inputs(tokenizer, kind):
    inputs = dict(tokenizer(["this movie was great", "who wrote hamlet ? call now"], padding=True, return_tensors="pt"))
    if kind == "seq2seq":
        inputs["decoder_input_ids"] = torch.tensor([[0, 5, 6], [0, 7, 8]])
    return {k: v for k, v in inputs.items() if k != "token_type_ids"}


def our_hf_outputs(model, inputs):
    """The underlying HF model's output with our DET active (a prompt is prepended to the input embeddings)."""
    embeds, mask = model.backbone._embed(inputs["input_ids"], inputs["attention_mask"], model.det.input_prefix())
    rest = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
    with torch.no_grad(), model.det.active():
        return model.backbone.model(inputs_embeds=embeds, attention_mask=mask, **rest)


def main_output(outputs, kind):
    return outputs.last_hidden_state if kind == "encoder" else outputs.logits


@pytest.mark.parametrize("kind", TINY_KINDS)
@pytest.mark.parametrize("det", sorted(PEFT_METHODS))
def test_peft_export_round_trip(tiny_model_dirs, tmp_path, kind, det):
    model = build_delta_model(load_backbone({"name_or_path": str(tiny_model_dirs[kind])}), TINY_SPECS[det], 42)
    generator = torch.Generator().manual_seed(3)
    vector = model.vector() + 0.3 * torch.randn(model.num_parameters, generator=generator)
    folder = save_peft_adapter(model, vector, tmp_path / "adapter", det, {"task": "toy"})
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["peft_type"] == PEFT_METHODS[det] and config["inference_mode"] is True
    assert sorted(p.name for p in folder.iterdir()) == ["adapter_config.json", "adapter_model.safetensors",
                                                        "deltaspace.json"]
    assert json.loads((folder / "deltaspace.json").read_text())["solution_digest"] == tensor_digest(vector)

    peft_model = load_peft(tiny_model_dirs[kind], kind, folder)
    inputs = hf_inputs(model.backbone.tokenizer, kind)
    with torch.no_grad():
        theirs = main_output(peft_model(**inputs), kind)
        bare = main_output(AUTO_CLASSES[kind].from_pretrained(tiny_model_dirs[kind])(**inputs), kind)
    ours = main_output(our_hf_outputs(model, inputs), kind)
    assert ours.shape == theirs.shape
    torch.testing.assert_close(theirs, ours, atol=ATOL, rtol=ATOL)
    assert not torch.allclose(theirs[:, -bare.shape[1]:], bare, atol=1e-3)  # the adapter really acts
    if det == "lora":  # LoRA keeps the model's structure, so our scoring rule runs on the PEFT model itself
        scorer = Backbone(peft_model, model.backbone.tokenizer, kind, str(tiny_model_dirs[kind]))
        batch = model.backbone.prepare(EXAMPLES)
        with torch.no_grad():
            torch.testing.assert_close(scorer.score(batch), model(batch), atol=ATOL, rtol=ATOL)


@pytest.mark.parametrize("det", sorted(set(TINY_SPECS) - set(PEFT_METHODS)))
def test_dets_peft_lacks_are_refused_by_name(tiny_model_dirs, tmp_path, det):
    model = build_delta_model(load_backbone({"name_or_path": str(tiny_model_dirs["encoder"])}), TINY_SPECS[det], 42)
    with pytest.raises(ExportError, match=rf"DET 'my_{det}' \(method '{det}'\).*Exportable methods: lora, prompt"):
        save_peft_adapter(model, model.vector(), tmp_path / "adapter", f"my_{det}", {})
    assert not (tmp_path / "adapter").exists()
    with pytest.raises(ExportError, match="no PEFT method"):
        check_exportable("mine", "some_new_method")


def test_stage1_solution_exports_through_the_cli(tiny_model_dirs, tmp_path, capsys):
    data = write_task(tmp_path / "data")
    spec = spec_for(tiny_model_dirs["causal"], "lora", steps=2)
    train_det("toy", "lora", 42, spec, data, tmp_path / "run", tmp_path / "ck", log=lambda m: None)
    assert cli.main(["export_original_peft", "--delta-path", str(tmp_path / "run" / "delta.safetensors"),
                     "--out", str(tmp_path / "peft")]) == 0
    tensors, _ = load_tensors(tmp_path / "run" / "delta.safetensors")
    model = build_delta_model(load_backbone(spec["backbone"]), spec["det"], 42)
    model.load_vector(model.vector() + tensors["delta"])
    scorer = Backbone(load_peft(tiny_model_dirs["causal"], "causal", tmp_path / "peft"), model.backbone.tokenizer,
                      "causal", spec["backbone"]["name_or_path"])
    batch = model.backbone.prepare(EXAMPLES)
    with torch.no_grad():
        torch.testing.assert_close(scorer.score(batch), model(batch), atol=ATOL, rtol=ATOL)
    provenance = json.loads((tmp_path / "peft" / "deltaspace.json").read_text())
    assert provenance["space"] == "own" and provenance["task"] == "toy"
    # A stage-1 run on other backbone weights has another theta_init: refused, not silently exported.
    assert cli.main(["export_original_peft", "--delta-path", str(tmp_path / "run" / "delta.safetensors"),
                     "--backbone", str(tiny_model_dirs["encoder"]), "--out", str(tmp_path / "other")]) == 1
    assert "another theta_init" in capsys.readouterr().err


ARTIFACT_DETS = {"lora": TINY_SPECS["lora"], "prompt": {"method": "prompt", "length": 2},
                 "adapter": {"method": "adapter", "bottleneck": 2}}
STAGE3 = {"lrs": [1e-1, 3e-1], "optimizer": "adafactor", "steps": 4, "batch_size": 4, "eval_every": 2,
          "eval_batch_size": 8}


@pytest.fixture(scope="module")
def tiny_artifact(tiny_model_dirs, tmp_path_factory):
    """A subspace over three DETs of the tiny encoder written by stage 2's own writer, then the artifact folder."""
    root = tmp_path_factory.mktemp("artifact")
    backbone = {"name_or_path": str(tiny_model_dirs["encoder"])}
    models = {d: build_delta_model(load_backbone(backbone), s, 42) for d, s in ARTIFACT_DETS.items()}
    inits = {d: m.vector() for d, m in models.items()}
    torch.manual_seed(0)
    subspace = Subspace({d: m.num_parameters for d, m in models.items()}, 3)
    init_from_joint_svd(subspace, {d: 0.2 * torch.randn(4, m.num_parameters) for d, m in models.items()})
    spec = {"backbone": backbone, "dets": ARTIFACT_DETS, "init_seed": 42}
    save_subspace(root / "s2" / "subspace.safetensors", subspace, models, inits, spec, ["a", "b"])
    # No stage-2 steps here: the joint-SVD fit is the subspace itself (stage 3's svd baseline reads it).
    save_subspace(root / "s2" / "svd_subspace.safetensors", subspace, models, inits, spec, ["a", "b"])
    (root / "s2" / "points.csv").write_text("task,seed,det,i0,i1,i2\na,42,lora,0.5,-0.25,0.125\n")
    (root / "s2" / "metrics.json").write_text(json.dumps({"steps": 4, "best_step": 2, "dev_mixed": 0.625,
                                                           "mean_relative_reconstruction_error": 0.125}))
    assert cli.main(["subspace_artifact", "--subspace-path", str(root / "s2" / "subspace.safetensors"), "--points-path",
                     str(root / "s2" / "points.csv"), "--metrics-path", str(root / "s2" / "metrics.json"),
                     "--out", str(root / "artifact")]) == 0
    return root, spec


def test_artifact_round_trip_keeps_tensors_and_metadata(tiny_artifact):
    root, spec = tiny_artifact
    art = artifact.load(root / "artifact")
    subspace, inits, meta = load_subspace(root / "s2" / "subspace.safetensors")
    assert art.dets == list(ARTIFACT_DETS) and art.rank == 3 and art.train_tasks == ["a", "b"]
    assert art.det_specs == ARTIFACT_DETS and art.backbone_spec == spec["backbone"] and art.init_seed == 42
    assert art.metadata == meta
    for det in ARTIFACT_DETS:
        assert torch.equal(art.inits[det], inits[det])
        assert torch.equal(art.subspace.up[det].weight, subspace.up[det].weight)
        for name, tensor in subspace.down[det].state_dict().items():
            assert torch.equal(art.subspace.down[det].state_dict()[name], tensor)
    assert (root / "artifact" / "points.csv").read_text() == (root / "s2" / "points.csv").read_text()
    assert not list((root / "artifact").glob(".*tmp"))


def test_model_card_names_backbone_dets_rank_tasks_and_usage(tiny_artifact):
    root, spec = tiny_artifact
    card = (root / "artifact" / "README.md").read_text()
    assert f"r = 3, 3 DETs on {spec['backbone']['name_or_path']}" in card
    assert "(kind encoder;" in card and "Learned from 2 task(s): a, b" in card
    assert "best step 2" in card and "0.6250" in card and "0.1250" in card
    rows = {line.split("|")[1].strip(): line for line in card.splitlines() if line.startswith("| ")}
    assert rows["lora"].startswith("| lora | lora | alpha=4, rank=2 |")
    assert rows["lora"].endswith("| yes (LORA, FEATURE_EXTRACTION) |")
    assert rows["adapter"].startswith("| adapter | adapter | bottleneck=2 |") and rows["adapter"].endswith("| no |")
    assert 'art.export_peft("lora", found.point, "my_adapter")' in card


def test_decode_matches_stage3_decoding_and_training_moves_the_point(tiny_artifact, tmp_path):
    root, spec = tiny_artifact
    art = artifact.load(root / "artifact")
    subspace, inits, _ = load_subspace(root / "s2" / "subspace.safetensors")
    data = write_task(tmp_path / "data")
    batch = art.delta_model("lora").backbone.prepare(read_split(data / "train.jsonl")[:8], "toy")
    found = art.train_intrinsic(data, det="lora", steps=4, lrs=[1e-1, 3e-1], batch_size=4, eval_every=2,
                                eval_batch_size=8, seed=42)
    # a trained step beats the start on dev (lr 0.1 never leaves the start's 0.75; 0.3 reaches 1.0 at step 4)
    assert found.point.shape == (3,) and (found.lr, found.best_step) == (3e-1, 4) and found.test is not None

    # Stage 3's decoding of a point: the functional forward at init + Up(I).
    model = build_delta_model(load_backbone(spec["backbone"]), ARTIFACT_DETS["lora"], 42)
    with torch.no_grad():
        stage3_scores = model.functional_scores(inits["lora"] + subspace.decode("lora", found.point), batch)
        decoded = art.decode("lora", found.point)(batch)
        start = torch.randn(3, generator=torch.Generator().manual_seed(42)) * 0.02  # stage 3's seeded start
        start_scores = art.decode("lora", start)(batch)
    torch.testing.assert_close(decoded, stage3_scores, atol=ATOL, rtol=ATOL)
    assert not torch.allclose(decoded, start_scores, atol=1e-3)
    assert F.cross_entropy(decoded, batch.labels) < F.cross_entropy(start_scores, batch.labels)

    # The API reuses stage 3's loop: the same settings and seed find the same point as an optimize job.
    # (stage 3 reads the artifact's copy of the subspace and points; the svd baseline from stage 2's folder)
    decomposition = Decomposition(subspace=root / "artifact" / "subspace.safetensors",
                                  svd_subspace=root / "s2" / "svd_subspace.safetensors",
                                  points=root / "artifact" / "points.csv", metrics=root / "s2" / "metrics.json")
    job = optimize("toy", "lora", 42, {**spec, "precision": "fp32", "device": "cpu", "optimize": STAGE3},
                   decomposition, data, tmp_path / "s3", log=lambda m: None)
    torch.testing.assert_close(torch.tensor(job["intrinsic"]), found.point)
    assert job["dev"] == found.dev and job["test"] == found.test

    # The stage-3 solution exported to PEFT through the CLI runs as the decoded DeltaModel does.
    assert cli.main(["export_peft", "--intrinsic-path", str(tmp_path / "s3" / "intrinsic.safetensors"), "--subspace",
                     str(root / "artifact"), "--out", str(tmp_path / "peft")]) == 0
    scorer = Backbone(load_peft(spec["backbone"]["name_or_path"], "encoder", tmp_path / "peft"),
                      model.backbone.tokenizer, "encoder", spec["backbone"]["name_or_path"])
    with torch.no_grad():
        torch.testing.assert_close(scorer.score(batch), decoded, atol=ATOL, rtol=ATOL)
    with pytest.raises(ExportError, match="DET 'adapter'"):
        art.export_peft("adapter", found.point, tmp_path / "adapter")
    with pytest.raises(KeyError, match="no DET 'bitfit'"):
        art.decode("bitfit", found.point)
    with pytest.raises(ValueError, match="has 3 numbers, got 2"):
        art.decode("lora", [0.0, 1.0])


def test_train_intrinsic_takes_plain_examples(tiny_artifact):
    root, _ = tiny_artifact
    art = artifact.load(root / "artifact" / "subspace.safetensors")
    rows = [{"input": f"{word} movie", "candidates": ["negative", "positive"], "label": int(word == "great")}
            for word in ("great", "awful", "great", "awful")]
    found = art.train_intrinsic(rows, det="prompt", steps=2, lrs=[1e-1], batch_size=2)
    assert found.point.shape == (3,) and found.test is None and 0 <= found.dev <= 1
    with pytest.raises(ValueError, match="'train' split"):
        art.train_intrinsic({"dev": rows}, det="prompt")


def test_workflow_plans_the_artifact_and_one_export_per_peft_solution(workdir):
    smoke = load_config("smoke.yaml")
    result = snakemake(workdir, "-n", "--configfile", str(REPO / "config" / "smoke.yaml"))
    assert result.returncode == 0, result.stdout
    exportable = [d for d, s in smoke["dets"].items() if s["method"] in PEFT_METHODS]
    jobs = planned_jobs(result.stdout)
    assert jobs["subspace_artifact"] == 1
    assert jobs["export_peft"] == len(smoke["decompose"]["unseen_tasks"]) * len(exportable) * len(smoke["seeds"])
    first = f"results/export/peft/{smoke['decompose']['unseen_tasks'][0]}/{exportable[0]}/seed{smoke['seeds'][0]}"
    assert f"{first}/adapter_config.json" in result.stdout
