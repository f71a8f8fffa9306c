"""Fine-tuning as a DET (a chosen set of backbone weights) and the Fastfood projections that let stage 2 decompose
it with memory linear in D; stages 1-3 and transfer with a finetune DET on a tiny model."""
from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
import yaml
from test_dets import EXAMPLES
from test_original import train_tiny_stage1
from tiny_models import TINY_KINDS

from conftest import REPO, load_config
from deltaspace.backbones import load_backbone
from deltaspace.dets import DetConfigError, build_delta_model
from deltaspace.io import load_tensors, tensor_digest
from deltaspace.projections import Fastfood, hadamard_matrix, walsh_hadamard
from deltaspace.decompose import DENSE_MAX_NUMBERS, decompose
from deltaspace.subspace import load_subspace, save_subspace
from deltaspace.optimize import optimize, random_up_projection
from deltaspace.subspace import (Subspace, UpProjection, init_from_joint_svd, structured_dets,
                                 wide_least_squares)
from deltaspace.tasks import Example
from deltaspace.transfer import transfer

# Two-token answers: with one-token answers T5's decoder self-attention has a single position, so its q and k
# would get no gradient and "all" could not be checked tensor by tensor.
LONG_ANSWERS = [Example(e.input, tuple(f"{c} message" for c in e.candidates), e.label) for e in EXAMPLES]


def finetune_model(model_dir, **options):
    return build_delta_model(load_backbone({"name_or_path": str(model_dir)}), {"method": "finetune", **options}, 7)


def picked(model) -> list[str]:
    return [n.removeprefix("backbone.model.") for n in model.tensor_names]


# ---- the DET ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", TINY_KINDS)
def test_finetune_all_round_trip(tiny_model_dirs, kind):
    model = finetune_model(tiny_model_dirs[kind])
    fresh = load_backbone({"name_or_path": str(tiny_model_dirs[kind])}).model
    pretrained = dict(fresh.named_parameters())
    # theta_init is the pre-trained weights themselves: the delta of an untrained run is exactly zero.
    assert torch.equal(model.vector(), torch.cat([pretrained[n].reshape(-1) for n in picked(model)]))
    assert model.num_parameters == sum(p.numel() for n, p in pretrained.items() if not n.startswith("pooler."))

    vector = model.vector() + 0.01 * torch.randn(model.num_parameters)
    pieces = model.unflatten(vector)
    assert torch.equal(torch.cat([t.reshape(-1) for t in pieces.values()]), vector)

    batch = model.backbone.prepare(LONG_ANSWERS)
    mask = batch.candidate_mask
    untouched = model.backbone.score(batch)  # the backbone alone
    torch.testing.assert_close(model.functional_scores(model.vector(), batch)[mask], untouched[mask])
    functional = model.functional_scores(vector, batch)
    model.load_vector(vector)
    torch.testing.assert_close(functional[mask], model(batch)[mask], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(functional[mask], untouched[mask])

    point = vector.clone().requires_grad_(True)
    F.cross_entropy(model.functional_scores(point, batch), batch.labels).backward()
    for name, grad in model.unflatten(point.grad).items():
        assert grad.abs().sum() > 0, f"{kind}: no gradient reaches {name}"


def test_named_sets_layers_and_regexes_pick_exactly_those_tensors(tiny_model_dirs):
    bert, t5 = tiny_model_dirs["encoder"], tiny_model_dirs["seq2seq"]
    assert picked(finetune_model(bert, targets="attention", layers=[1])) == [
        f"encoder.layer.1.attention.{m}.{p}" for m in ("self.query", "self.key", "self.value", "output.dense")
        for p in ("weight", "bias")]
    assert picked(finetune_model(bert, targets=[r"query\.weight$", "norms"], layers=[0])) == [
        "encoder.layer.0.attention.self.query.weight", "encoder.layer.0.attention.output.LayerNorm.weight",
        "encoder.layer.0.attention.output.LayerNorm.bias", "encoder.layer.0.output.LayerNorm.weight",
        "encoder.layer.0.output.LayerNorm.bias"]
    assert picked(finetune_model(bert, targets="embeddings")) == [
        f"embeddings.{e}_embeddings.weight" for e in ("word", "position", "token_type")]
    # T5: a block index selects that block of the encoder and of the decoder (self and cross attention).
    t5_attention = picked(finetune_model(t5, targets="attention", layers=[0]))
    assert t5_attention == [f"{side}.block.0.layer.{i}.{kind}.{p}.weight"
                            for side, layers in (("encoder", [(0, "SelfAttention")]),
                                                 ("decoder", [(0, "SelfAttention"), (1, "EncDecAttention")]))
                            for i, kind in layers for p in "qkvo"]
    everything = picked(finetune_model(t5))
    assert "shared.weight" in everything and len(everything) == len(set(everything))


@pytest.mark.parametrize("options,message", [
    ({"targets": "attention("}, "neither a named set .* nor a valid regular expression"),
    ({"targets": ["attention", "quary"]}, "'quary' .* picks no parameter .* named sets: \\['all', 'attention'"),
    ({"layers": [9]}, "layers \\[9\\] are not blocks .* \\[0, 1\\]"),
    ({"layers": "first"}, "must be 'all' or a list of block indices"),
    ({"targets": []}, "must be a non-empty string or list"),
    ({"target": "all"}, "unknown option\\(s\\) \\['target'\\]"),
])
def test_bad_finetune_options_are_named(tiny_model_dirs, options, message):
    with pytest.raises(DetConfigError, match=message):
        finetune_model(tiny_model_dirs["encoder"], **options)


# ---- Fastfood projections --------------------------------------------------------------------------------------


def test_walsh_hadamard_is_the_hadamard_matrix_product():
    for n in (1, 2, 64, 1024):  # 1024 = 128 x 8: two Kronecker factors
        x = torch.randn(3, n, dtype=torch.float64)
        torch.testing.assert_close(walsh_hadamard(x), x @ hadamard_matrix(n).double())
    with pytest.raises(ValueError, match="not a power of two"):
        walsh_hadamard(torch.zeros(6))


def test_fastfood_is_the_matrix_h_g_pi_h_b_and_its_transpose():
    dim, rank, length = 1000, 3, 1024
    fastfood = Fastfood(dim, rank, generator=torch.Generator().manual_seed(5))
    generator = torch.Generator().manual_seed(5)  # redraw what the constructor drew, in its order
    g = torch.randn(length, generator=generator) * 0.02
    permutation = torch.eye(length)[torch.randperm(length, generator=generator)]
    signs = torch.ones(length)  # B beyond r multiplies zero padding: any value
    signs[:rank] = torch.randint(0, 2, (rank,), generator=generator).float() * 2 - 1
    h = hadamard_matrix(length)
    matrix = (h @ torch.diag(g) @ permutation @ h @ torch.diag(signs))[:dim, :rank] / math.sqrt(length)
    torch.testing.assert_close(fastfood(torch.eye(rank)).T, matrix, rtol=1e-4, atol=1e-6)
    deltas = torch.randn(4, dim)
    torch.testing.assert_close(fastfood.transposed(deltas), deltas @ matrix, rtol=1e-4, atol=1e-6)
    assert 0.015 < matrix.std() < 0.025  # entries distributed like the dense N(0, 0.02) start
    torch.testing.assert_close(fastfood.frobenius_norm(), matrix.norm())


def test_fastfood_memory_is_linear_in_d():
    rank = 8
    for dim in (10_000, 1_000_000):
        subspace = Subspace({"finetune": dim}, rank, structured=["finetune"])
        sizes = [t.numel() for t in subspace.state_dict().values()]
        assert max(sizes) < 2 * dim  # one diagonal / permutation of L < 2D numbers each: no D x r block
        assert sum(sizes) < 2 * 4 * dim + 2 * rank * rank  # up and down: a diagonal and a permutation each
    assert structured_dets({"a": 100, "b": 10_000}, 4, 1000) == ["b"]
    assert structured_dets({"a": 100, "b": 10_000}, 4, None) == []


def test_fastfood_gradients_reach_its_diagonals_and_the_point():
    subspace = Subspace({"big": 3000, "small": 50}, 4, structured=["big"])
    delta = {"big": torch.randn(3000), "small": torch.randn(50)}
    points = subspace.points(delta)
    mixed = Subspace.mix(points, torch.tensor([0.3, 0.7]))
    loss = subspace.reconstruction_loss(delta, points) + subspace.decode("big", mixed).pow(2).sum()
    loss.backward()
    for name, p in subspace.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    with torch.autocast("cpu", dtype=torch.bfloat16):  # computed in fp32 whatever autocast says
        out = subspace.decode("big", mixed.detach())
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, subspace.decode("big", mixed.detach()))


def test_joint_svd_start_with_a_structured_det():
    """Fastfood DETs get their closest structured fit; their training deltas still map to the dense DETs' points."""
    torch.manual_seed(0)
    rank, n_tasks = 4, 3
    latent = 0.1 * torch.randn(n_tasks, rank)
    deltas = {d: latent @ torch.randn(dim, rank).T / 2 for d, dim in (("dense", 300), ("big", 5000))}
    subspace = Subspace({"dense": 300, "big": 5000}, rank, structured=["big"])
    errors = init_from_joint_svd(subspace, deltas)
    # Dense: exact but for tanh's curvature. Fastfood with k = 3 fitted directions: about 1/k of the energy.
    assert errors["dense"] < 0.05 and errors["big"] < 0.9
    with torch.no_grad():
        points = subspace.points(deltas)
    # The fitted directions (the rest are random by design) agree: the dense second layer absorbed the misfit.
    torch.testing.assert_close(points["big"][:, :n_tasks], points["dense"][:, :n_tasks], rtol=0, atol=0.03)
    one_task = {d: v[:1] for d, v in deltas.items()}  # one direction: the structured fit is exact
    assert init_from_joint_svd(Subspace({"dense": 300, "big": 5000}, rank, structured=["big"]), one_task)["big"] < 0.02


def test_least_squares_map_of_a_fine_tuning_sized_delta():
    """pinv of a (tasks, D) delta with D > 1 / eps (8.4M in fp32): torch's default tolerance zeroes it."""
    torch.manual_seed(0)
    delta = 1e-4 * torch.randn(2, 9_000_000)
    z = torch.tensor([[0.6, -0.8], [0.8, 0.6]])
    mapped = wide_least_squares(delta, z)
    torch.testing.assert_close(delta.double() @ mapped.double(), z.double(), rtol=0, atol=1e-6)


def test_structured_subspace_file_round_trip(tmp_path):
    dims, rank = {"lora": 40, "finetune": 3000}, 3
    subspace = Subspace(dims, rank, structured=["finetune"])
    inits = {d: torch.randn(dim) for d, dim in dims.items()}
    models = {d: SimpleNamespace(num_parameters=dim) for d, dim in dims.items()}
    spec = {"dets": {"lora": {"method": "lora"}, "finetune": {"method": "finetune"}}, "backbone": {}, "init_seed": 1}
    save_subspace(tmp_path / "s.safetensors", subspace, models, inits, spec, ["a"])
    tensors, meta = load_tensors(tmp_path / "s.safetensors")
    assert json.loads(meta["projections"]) == {"lora": "dense", "finetune": "fastfood"}
    assert tensors["up.lora.weight"].shape == (40, rank)  # the dense format is unchanged
    assert max(t.numel() for k, t in tensors.items() if ".finetune." in k) < 2 * dims["finetune"]
    loaded, loaded_inits, _ = load_subspace(tmp_path / "s.safetensors")
    assert isinstance(loaded.up["finetune"], Fastfood) and isinstance(loaded.up["lora"], UpProjection)
    point, delta = torch.randn(rank), torch.randn(3000)
    with torch.no_grad():
        for det in dims:
            torch.testing.assert_close(loaded.decode(det, point), subspace.decode(det, point))
        torch.testing.assert_close(loaded.points({"finetune": delta}), subspace.points({"finetune": delta}))
    assert torch.equal(loaded_inits["finetune"], inits["finetune"])


def test_random_up_projection_of_a_fastfood_keeps_its_structure_and_norm():
    learned = Fastfood(3000, 4)
    random = random_up_projection(learned, seed=3)
    assert isinstance(random, Fastfood) and random.dim == 3000 and random.rank == 4
    torch.testing.assert_close(random.frobenius_norm(), learned.frobenius_norm())
    assert not torch.allclose(random.diagonal, learned.diagonal)
    assert torch.equal(random_up_projection(learned, seed=3).diagonal, random.diagonal)  # seeded


SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def test_dense_max_numbers_default_is_the_schemas():
    schema = yaml.safe_load(SCHEMA.read_text())
    assert schema["properties"]["decompose"]["properties"]["dense_max_numbers"]["default"] == DENSE_MAX_NUMBERS


def test_the_schema_takes_finetune_options():
    """The schema file, then the DET part generated from finetune's declaration, as the workflow checks them."""
    from snakemake.utils import validate

    from deltaspace.config_schema import first_error

    config = load_config("smoke.yaml")
    config["dets"]["finetune"] = {"method": "finetune", "targets": ["attention", r"pooler\."], "layers": [0, 5],
                                  "lr": 1.0e-4}
    validate(config, str(SCHEMA))
    assert first_error(config, SCHEMA) is None
    for bad in ({"layers": [-1]}, {"layers": "last"}, {"targets": []}, {"rank": 4}):
        config["dets"]["finetune"] = {"method": "finetune", **bad}
        error = first_error(config, SCHEMA)
        assert error is not None and list(error.absolute_path)[:2] == ["dets", "finetune"], bad


# ---- stages 1-3 and transfer with a finetune DET ---------------------------------------------------------------

DETS = {"finetune": {"method": "finetune", "lr": 1e-3}, "lora": {"method": "lora", "rank": 2, "alpha": 4}}


def test_stages_with_a_finetune_det_on_a_tiny_model(tiny_model_dirs, tmp_path):
    model_dir = str(tiny_model_dirs["encoder"])
    data_dirs, runs = train_tiny_stage1(model_dir, DETS, tmp_path, steps=2)
    vectors, meta = load_tensors(tmp_path / "vectors" / "finetune.safetensors")
    pretrained = torch.cat([p.reshape(-1) for n, p in load_backbone({"name_or_path": model_dir}).model.named_parameters()
                            if not n.startswith("pooler.")])
    assert meta["init_digest"] == tensor_digest(pretrained) and vectors["deltas"].abs().sum(1).min() > 0

    spec = {"backbone": {"name_or_path": model_dir}, "dets": DETS, "init_seed": 42, "precision": "fp32",
            "device": "cpu", "seed": 0,
            # finetune's D x r (about 47k) is above the threshold, LoRA's (1k) below: one of each kind.
            "decompose": {"train_tasks": ["a"], "intrinsic_dim": 2, "init": "joint_svd", "lambda": 1.0,
                         "mixing": "paper", "optimizer": "adafactor", "lr": 1e-2, "steps": 2, "batch_size": 4,
                         "eval_every": 2, "eval_batch_size": 8, "dev_examples": 8, "dense_max_numbers": 5000},
            "optimize": {"lrs": [5e-2], "optimizer": "adafactor", "steps": 2, "batch_size": 4, "eval_every": 2,
                       "eval_batch_size": 8}}
    logs = []
    decompose(spec, tmp_path / "vectors", data_dirs, tmp_path / "s2", tmp_path / "ck2", log=logs.append)
    assert any("Fastfood projections for ['finetune']" in line for line in logs)
    subspace_path = tmp_path / "s2" / "subspace.safetensors"
    subspace, inits, _ = load_subspace(subspace_path)
    assert subspace.structured == ["finetune"] and torch.equal(inits["finetune"], pretrained)

    results = {det: optimize("b", det, 42, spec, tmp_path / "s2", data_dirs["b"], tmp_path / "s3" / det,
                                   log=lambda m: None) for det in DETS}
    assert 0 <= results["finetune"]["test"] <= 1 and 0 <= results["finetune"]["random_test"] <= 1
    # the baselines run through a Fastfood projection too: the joint-SVD start and the training tasks' points
    assert 0 <= results["finetune"]["svd_test"] <= 1 and 0 <= results["finetune"]["best_train_point_test"] <= 1
    assert results["finetune"]["best_train_point_from"]["task"] == "a"
    table = transfer("b", 42, spec, subspace_path, {d: tmp_path / "s3" / d for d in DETS}, data_dirs["b"],
                     tmp_path / "transfer.csv", log=lambda m: None)
    assert len(table) == 4
    for det in DETS:  # the diagonal reproduces stage 3 through either kind of projection
        same = table[(table.source_det == det) & (table.target_det == det)]["score"].item()
        assert same == pytest.approx(results[det]["test"])
