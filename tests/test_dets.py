"""Every DET on every backbone kind: layout, functional forward, gradients, seeded init; the paper's sizes."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tiny_models import TINY_KINDS
from transformers import DynamicCache, T5Config, T5ForConditionalGeneration

from deltaspace.backbones import Backbone, load_backbone
from deltaspace.dets import METHODS, DetConfigError, build_delta_model
from deltaspace.tasks import Example

TINY_SPECS = {
    "adapter": {"method": "adapter", "bottleneck": 4},
    "lora": {"method": "lora", "rank": 2, "alpha": 4},
    "prefix": {"method": "prefix", "length": 3, "hidden": 5},
    "prompt": {"method": "prompt", "length": 3},
    "bitfit": {"method": "bitfit"},
    # Not "all": with one-token answers, T5's decoder self-attention q/k get no gradient (test_finetune covers it).
    "finetune": {"method": "finetune", "targets": ["ffn", "norms"]},
}
EXAMPLES = [
    Example("this movie was great", ("negative", "positive"), 1),
    Example("awful acting , a waste of time", ("negative", "positive"), 0),
    Example("who wrote hamlet ?", ("person", "number", "location"), 0),
]
CASES = [(kind, det) for kind in TINY_KINDS for det in TINY_SPECS]


def test_every_method_has_a_tiny_spec():
    assert set(TINY_SPECS) == set(METHODS)


def _model(tiny_model_dirs, kind, det, seed=7):
    backbone = load_backbone({"name_or_path": str(tiny_model_dirs[kind])})
    assert backbone.kind == kind
    return build_delta_model(backbone, TINY_SPECS[det], seed)


@pytest.mark.parametrize("kind,det", CASES)
def test_flatten_unflatten_round_trip(tiny_model_dirs, kind, det):
    model = _model(tiny_model_dirs, kind, det)
    vector = torch.randn(model.num_parameters)
    pieces = model.unflatten(vector)
    assert list(pieces) == model.tensor_names
    assert [tuple(t.shape) for t in pieces.values()] == model.tensor_shapes
    assert torch.equal(torch.cat([t.reshape(-1) for t in pieces.values()]), vector)
    model.load_vector(vector)
    assert torch.equal(model.vector(), vector)
    with pytest.raises(ValueError, match="needs"):
        model.unflatten(torch.zeros(model.num_parameters + 1))


@pytest.mark.parametrize("kind,det", CASES)
def test_functional_forward_equals_ordinary_forward(tiny_model_dirs, kind, det):
    model = _model(tiny_model_dirs, kind, det)
    batch = model.backbone.prepare(EXAMPLES)
    vector = model.vector() + 0.05 * torch.randn(model.num_parameters)
    functional = model.functional_scores(vector, batch)
    model.load_vector(vector)
    ordinary = model(batch)
    mask = batch.candidate_mask
    assert torch.isinf(functional[~mask]).all()
    torch.testing.assert_close(functional[mask], ordinary[mask], rtol=1e-5, atol=1e-5)
    # The vector really is used: another vector scores differently.
    other = model.functional_scores(vector + 0.5 * torch.randn_like(vector), batch)
    assert not torch.allclose(other[mask], ordinary[mask])


@pytest.mark.parametrize("kind,det", CASES)
def test_gradients_reach_every_tensor_of_the_flat_vector(tiny_model_dirs, kind, det):
    model = _model(tiny_model_dirs, kind, det)
    batch = model.backbone.prepare(EXAMPLES)
    vector = (model.vector() + 0.05 * torch.randn(model.num_parameters)).requires_grad_(True)
    F.cross_entropy(model.functional_scores(vector, batch), batch.labels).backward()
    for name, grad in model.unflatten(vector.grad).items():
        assert grad.abs().sum() > 0, f"{kind}/{det}: no gradient reaches {name}"
    assert all(p.grad is None for p in model.backbone.parameters() if not p.requires_grad)


@pytest.mark.parametrize("kind,det", CASES)
def test_init_is_fixed_by_the_seed(tiny_model_dirs, kind, det):
    a, b, c = (_model(tiny_model_dirs, kind, det, seed) for seed in (3, 3, 4))
    assert torch.equal(a.vector(), b.vector())
    if det not in ("bitfit", "finetune"):  # BitFit starts at zero, fine-tuning at the pre-trained weights
        assert not torch.equal(a.vector(), c.vector())


def test_prefix_matches_the_models_own_key_value_cache(tiny_model_dirs):
    """Our prefix path (inside the attention function) equals a past-key-value cache holding the same
    keys/values, which Llama supports natively: checks the masks and the causal alignment."""
    model = _model(tiny_model_dirs, "causal", "prefix")
    llama, det = model.backbone.model, model.det
    ids = model.backbone.tokenizer(["this movie was great and", "free entry"], padding=True, return_tensors="pt")
    length = ids["input_ids"].shape[1]
    with det.active():
        ours = llama(**ids).logits
        layers = [m._deltaspace_prefix for m in det.attention_groups["layers"]]
    cache = DynamicCache()
    for i, (k, v) in enumerate(layers):
        cache.update(k.expand(2, -1, -1, -1), v.expand(2, -1, -1, -1), i)
    p = layers[0][0].shape[2]
    mask = torch.cat([torch.ones(2, p, dtype=torch.long), ids["attention_mask"]], dim=1)
    native = llama(input_ids=ids["input_ids"], attention_mask=mask, past_key_values=cache,
                   position_ids=torch.arange(length).expand(2, -1)).logits
    real = ids["attention_mask"].bool()
    torch.testing.assert_close(ours[real], native[real], rtol=1e-4, atol=1e-4)


def test_unknown_method_and_option_are_named():
    from deltaspace.dets import make_det

    with pytest.raises(DetConfigError, match="'houlsby'.*allowed"):
        make_det({"method": "houlsby"})
    with pytest.raises(DetConfigError, match="rnak"):
        make_det({"method": "lora", "rnak": 4})


def test_a_dets_options_and_defaults_come_from_its_declaration():
    from deltaspace.dets import make_det

    det = make_det({"method": "lora", "rank": 2})
    assert type(det).config is METHODS["lora"]
    assert det.spec == {"method": "lora", "rank": 2, "alpha": 16, "target_modules": "auto"}


def test_expected_params_is_asserted(tiny_model_dirs):
    backbone = load_backbone({"name_or_path": str(tiny_model_dirs["encoder"])})
    with pytest.raises(DetConfigError, match="expected_params says 5"):
        build_delta_model(backbone, {**TINY_SPECS["lora"], "expected_params": 5}, 0)


def t5_v1_1_base_on_meta() -> Backbone:
    """google/t5-base-lm-adapt's shape (T5 v1.1 base), built on the meta device: no weights needed to count."""
    config = T5Config(vocab_size=32128, d_model=768, d_kv=64, d_ff=2048, num_layers=12, num_heads=12,
                      feed_forward_proj="gated-gelu", tie_word_embeddings=False)
    with torch.device("meta"):
        return Backbone(T5ForConditionalGeneration(config), None, "seq2seq", "t5-v1_1-base (meta)")


def test_paper_preset_sizes_are_1_105_920_each():
    import yaml
    from pathlib import Path

    paper = yaml.safe_load((Path(__file__).parents[1] / "config" / "paper.yaml").read_text())
    dets = paper["dets"]
    assert {spec["method"] for spec in dets.values()} >= {"adapter", "lora", "prefix"}
    for name, spec in dets.items():
        if spec["method"] not in ("adapter", "lora", "prefix"):
            continue
        with torch.device("meta"):
            model = build_delta_model(t5_v1_1_base_on_meta(), spec, 42)
        assert model.num_parameters == 1_105_920, name
        assert spec["expected_params"] == 1_105_920
