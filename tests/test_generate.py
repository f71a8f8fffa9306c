"""Generate mode (the paper's text-to-text format): LM loss and greedy decoding through the DET's functional forward,
checked against transformers' own loss and generate, and against a plain decoding loop without cache or padding."""
from __future__ import annotations

import copy

import pytest
import torch

from deltaspace.backbones import BackboneError, TaskFormat, load_backbone, task_format
from deltaspace.dets import build_delta_model
from deltaspace.tasks import Example
from tiny_models import save_tiny

GENERATE = TaskFormat("t", "generate")
EXAMPLES = [
    Example("this movie was great and the acting was excellent", ("positive", "negative"), 0),
    Example("free entry win a prize", references=("spam message",)),
    Example("what is the capital of france ?", references=("who wrote hamlet", "hamlet")),
]


@pytest.fixture(scope="module", params=["seq2seq", "causal"])
def backbone(request, tmp_path_factory):
    folder = save_tiny(request.param, tmp_path_factory.mktemp(request.param))
    return load_backbone({"name_or_path": str(folder), "max_answer_tokens": 5})


def _delta(backbone, method, seed=0):
    model = build_delta_model(copy.deepcopy(backbone), {"method": method}, 0)
    # Move every DET tensor off its init so the DET changes the output (LoRA's B starts at zero).
    generator = torch.Generator().manual_seed(seed)
    return model, model.vector() + 1.0 * torch.randn(model.num_parameters, generator=generator)


def _plain_greedy(model, vector, example, show_options):
    """One example's greedy tokens up to EOS, with no padding and no cache: the whole forward for every token."""
    bb = model.backbone
    text = bb.format_input(example, TaskFormat("t", "generate", show_options))
    eos = bb.tokenizer.eos_token_id
    params = model.unflatten(vector)
    out = []
    with torch.no_grad(), torch.nn.utils.stateless._reparametrize_module(model, params, strict=False):
        with model.det.active():
            prefix = model.det.input_prefix()
            if bb.kind == "seq2seq":
                enc = bb.tokenizer([text], return_tensors="pt", truncation=True, max_length=bb.max_input_tokens)
                embeds, mask = bb._embed(enc["input_ids"], enc["attention_mask"], prefix)
                decoder = [bb.model.config.decoder_start_token_id]
                for _ in range(bb.max_answer_tokens):
                    logits = bb.model(inputs_embeds=embeds, attention_mask=mask,
                                      decoder_input_ids=torch.tensor([decoder])).logits
                    token = int(logits[0, -1].argmax())
                    if token == eos:
                        break
                    out.append(token)
                    decoder.append(token)
            else:
                ids = bb.tokenizer([text], truncation=True, max_length=bb.max_input_tokens)["input_ids"][0]
                for _ in range(bb.max_answer_tokens):
                    embeds, mask = bb._embed(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long), prefix)
                    token = int(bb.model(inputs_embeds=embeds, attention_mask=mask).logits[0, -1].argmax())
                    if token == eos:
                        break
                    out.append(token)
                    ids = ids + [token]
    return out


@pytest.mark.parametrize("method", ["lora", "prefix", "prompt", "adapter"])
def test_batched_cached_decoding_matches_a_plain_loop(backbone, method):
    backbone = copy.deepcopy(backbone)
    # A random tiny model often stops at once; with <unk> as the stop token every row runs all its steps.
    backbone.tokenizer.eos_token = "<unk>"
    model, vector = _delta(backbone, method)
    batch = backbone.prepare(EXAMPLES, TaskFormat("t", "generate", True))
    generated = model.functional_tokens(vector, batch)
    expected = [_plain_greedy(model, vector, e, True) for e in EXAMPLES]
    assert generated == expected
    assert sum(map(len, expected)) >= 2 * len(EXAMPLES), expected
    # The DET is live in this forward: a match with the DET ignored would prove nothing about decoding with it.
    assert float(model.functional_loss(vector, batch)) != pytest.approx(float(model.functional_loss(model.vector(), batch)))


def test_decoding_matches_transformers_generate(backbone):
    """With the DET at its init (LoRA adds zero), our loop is transformers' greedy generate, token for token."""
    model = build_delta_model(copy.deepcopy(backbone), {"method": "lora"}, 0)
    batch = backbone.prepare(EXAMPLES, GENERATE)
    ours = model.functional_generate(model.vector(), batch)
    t, tok = batch.tensors, backbone.tokenizer
    if backbone.kind == "seq2seq":
        ids, mask = t["input_ids"], t["attention_mask"]
    else:
        ids, mask = t["prompt_ids"], t["prompt_mask"]
    with torch.no_grad():
        out = backbone.model.generate(input_ids=ids, attention_mask=mask, do_sample=False, num_beams=1,
                                      max_new_tokens=backbone.max_answer_tokens, pad_token_id=tok.pad_token_id,
                                      eos_token_id=tok.eos_token_id)
    if backbone.kind == "causal":
        out = out[:, ids.shape[1]:]
    theirs = [tok.decode(row, skip_special_tokens=True).strip() for row in out]
    assert ours == theirs


def test_lm_loss_is_transformers_loss_on_the_answer_tokens(backbone):
    model = build_delta_model(copy.deepcopy(backbone), {"method": "lora"}, 0)
    batch = backbone.prepare(EXAMPLES, GENERATE)
    ours = float(model.functional_loss(model.vector(), batch))
    t = batch.tensors
    with torch.no_grad():
        if backbone.kind == "seq2seq":
            labels = t["target_ids"].masked_fill(t["target_mask"] == 0, -100)
            theirs = backbone.model(input_ids=t["input_ids"], attention_mask=t["attention_mask"], labels=labels).loss
        else:  # one right-padded row of prompt + answer + EOS per example, the loss on the answer's tokens only
            tok = backbone.tokenizer
            rows, labels = [], []
            for example in EXAMPLES:
                prompt = tok(backbone.format_input(example), truncation=True,
                             max_length=backbone.max_input_tokens)["input_ids"]
                answer = tok(" " + example.answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
                rows.append(prompt + answer)
                labels.append([-100] * len(prompt) + answer)
            width = max(map(len, rows))
            ids = torch.tensor([r + [tok.pad_token_id] * (width - len(r)) for r in rows])
            mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
            labels = torch.tensor([r + [-100] * (width - len(r)) for r in labels])
            theirs = backbone.model(input_ids=ids, attention_mask=mask, labels=labels).loss
    assert ours == pytest.approx(float(theirs), rel=1e-5)
    # The loss covers the first reference closed by EOS: 'spam message' is 2 words + EOS in the word tokenizer.
    target_mask = t["target_mask"] if backbone.kind == "seq2seq" else t["answer_mask"]
    assert int(target_mask[1].sum()) == 3


def test_lm_loss_trains_towards_the_gold_output(backbone):
    model, _ = _delta(backbone, "lora")
    batch = backbone.prepare(EXAMPLES[1:2], GENERATE)
    vector = model.vector().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([vector], lr=0.05)
    for _ in range(60):
        optimizer.zero_grad()
        loss = model.functional_loss(vector, batch)
        loss.backward()
        optimizer.step()
    assert model.functional_generate(vector.detach(), batch) == ["spam message"]


def test_options_are_written_into_the_input_in_generate_mode(backbone):
    example = Example("which is red ?", ("apple", "sky"), 0)
    assert backbone.format_input(example, TaskFormat("t", "generate", True)) == "which is red ? (A) apple (B) sky"
    assert backbone.format_input(example) == "which is red ?"


def test_generative_examples_cannot_be_ranked_and_encoders_cannot_generate(backbone, tmp_path):
    with pytest.raises(BackboneError, match="scoring: generate"):
        backbone.prepare(EXAMPLES, "t")
    encoder = load_backbone({"name_or_path": str(save_tiny("encoder", tmp_path / "enc"))})
    with pytest.raises(BackboneError, match="cannot generate"):
        encoder.prepare(EXAMPLES, GENERATE)


def test_task_format_from_task_json_and_backbone_default():
    assert task_format("a", {"kind": "classification"}, {}) == TaskFormat("a", "rank", False)
    assert task_format("a", {"kind": "multiple_choice"}, {"scoring": "generate"}) == TaskFormat("a", "generate", True)
    assert task_format("a", {"kind": "multiple_choice", "scoring": "rank"}, {"scoring": "generate"}) == TaskFormat("a")
    assert task_format("a", {"kind": "generative"}, {}) == TaskFormat("a", "generate", False)
    with pytest.raises(BackboneError, match="task 'a' is generative"):
        task_format("a", {"kind": "generative", "scoring": "rank"}, {})
    with pytest.raises(BackboneError, match="scoring 'beam'"):
        task_format("a", {"kind": "classification"}, {"scoring": "beam"})


def test_the_decode_cap_is_the_longest_training_answer_plus_eos(backbone):
    """By hand, in the tiny word tokenizer: 'positive' 1 + EOS, 'spam message' 2 + EOS, 'who wrote hamlet' 3 + EOS.
    A cap above max_answer_tokens (5 here) is cut to it, as training cuts the answers."""
    assert backbone.answer_cap(EXAMPLES) == 4
    assert backbone.answer_cap(EXAMPLES[:2]) == 3
    assert backbone.answer_cap([Example("x", references=("a b c d e f g",))]) == 5


def test_capped_decoding_is_transformers_generate_up_to_the_cap(backbone):
    """With the cap at 2 tokens, every row stops after 2 (EOS never comes: <unk> is the stop token), and its tokens
    are transformers' greedy generate with max_new_tokens=2 and the first 2 of the uncapped decoding."""
    backbone = copy.deepcopy(backbone)
    backbone.tokenizer.eos_token = "<unk>"
    model = build_delta_model(backbone, {"method": "lora"}, 0)
    uncapped = model.functional_tokens(model.vector(), backbone.prepare(EXAMPLES, GENERATE))
    batch = backbone.prepare(EXAMPLES, TaskFormat("t", "generate", answer_tokens=2))
    capped = model.functional_tokens(model.vector(), batch)
    assert [len(row) for row in uncapped] == [5, 5, 5] and [len(row) for row in capped] == [2, 2, 2]
    assert capped == [row[:2] for row in uncapped]
    t, tok = batch.tensors, backbone.tokenizer
    ids, mask = (t["input_ids"], t["attention_mask"]) if backbone.kind == "seq2seq" else (t["prompt_ids"],
                                                                                            t["prompt_mask"])
    with torch.no_grad():
        out = backbone.model.generate(input_ids=ids, attention_mask=mask, do_sample=False, num_beams=1,
                                      max_new_tokens=2, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    out = out[:, ids.shape[1]:] if backbone.kind == "causal" else out[:, 1:]  # seq2seq: after the start token
    assert capped == out.tolist()


def test_causal_rank_scores_are_each_candidates_mean_log_likelihood_after_the_prompt(backbone):
    """Rank scoring on a causal LM against a plain computation, one unpadded sequence per (example, candidate),
    with every position's logits: the mean log-probability of the candidate's tokens after the prompt."""
    if backbone.kind != "causal":
        pytest.skip("causal rank scoring")
    examples = [Example("this movie was great and the acting was excellent", ("positive", "negative"), 0),
                Example("free entry win a prize", ("ham", "spam message", "who wrote hamlet"), 1)]
    batch = backbone.prepare(examples, "t")
    tok = backbone.tokenizer
    with torch.no_grad():
        scores = backbone.score(batch)
        for i, example in enumerate(examples):
            prompt = tok(backbone.format_input(example), truncation=True, max_length=backbone.max_input_tokens)["input_ids"]
            for j, candidate in enumerate(example.candidates):
                answer = tok(" " + candidate, add_special_tokens=False)["input_ids"][: backbone.max_answer_tokens]
                logits = backbone.model(input_ids=torch.tensor([prompt + answer])).logits[0]
                logp = torch.log_softmax(logits.float(), -1)
                expected = sum(float(logp[len(prompt) - 1 + k, token]) for k, token in enumerate(answer)) / len(answer)
                assert float(scores[i, j]) == pytest.approx(expected, abs=1e-4), (i, j)
        assert scores[0, 2] == float("-inf")  # the padded candidate slot


@pytest.mark.parametrize("method", ["lora", "adapter", "prefix", "prompt"])
def test_causal_rank_scores_through_a_det_are_one_plain_forward_per_candidate(backbone, method):
    """The prompt runs once and its candidates on copies of its cache: the scores and their gradient equal one
    unpadded prompt + candidate forward per (example, candidate) with the DET live (prefix keys/values, prompt
    embeddings), on candidates of 1 to 3 tokens and prompts of different lengths."""
    if backbone.kind != "causal":
        pytest.skip("causal rank scoring")
    examples = [Example("this movie was great and the acting was excellent", ("positive", "negative"), 0),
                Example("free entry", ("ham", "spam message", "who wrote hamlet"), 1)]
    model, vector = _delta(backbone, method)
    backbone = model.backbone  # the copy the DET is attached to
    vector.requires_grad_(True)
    ours = model.functional_scores(vector, backbone.prepare(examples, "t"))
    tok = backbone.tokenizer
    expected = torch.full((2, 3), float("-inf"))
    with torch.nn.utils.stateless._reparametrize_module(model, model.unflatten(vector), strict=False):
        with model.det.active():
            for i, example in enumerate(examples):
                prompt = tok(backbone.format_input(example))["input_ids"]
                for j, candidate in enumerate(example.candidates):
                    answer = tok(" " + candidate, add_special_tokens=False)["input_ids"]
                    ids = torch.tensor([prompt + answer])
                    embeds, mask = backbone._embed(ids, torch.ones_like(ids), model.det.input_prefix())
                    logp = torch.log_softmax(backbone.model(inputs_embeds=embeds, attention_mask=mask).logits[0], -1)
                    start = embeds.shape[1] - len(answer) - 1
                    expected[i, j] = sum(logp[start + k, token] for k, token in enumerate(answer)) / len(answer)
    finite = torch.isfinite(expected)
    torch.testing.assert_close(ours[finite], expected[finite], rtol=1e-4, atol=1e-4)
    assert not torch.isfinite(ours[~finite]).any()
    theirs_grad, = torch.autograd.grad(expected[finite].sum(), vector, retain_graph=True)
    ours_grad, = torch.autograd.grad(ours[finite].sum(), vector)
    torch.testing.assert_close(ours_grad, theirs_grad, rtol=1e-3, atol=1e-5)
    assert theirs_grad.abs().sum() > 0
    # One-token candidates only (the word tokenizer's 'positive', 'negative'): no answer pass after the prompt.
    single = backbone.prepare(examples[:1], "t")
    assert single.tensors["answer_ids"].shape[1] == 1
    alone = model.functional_scores(vector.detach(), single)
    torch.testing.assert_close(alone[0], expected[0, :2].detach(), rtol=1e-4, atol=1e-4)
