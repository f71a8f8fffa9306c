"""Time the landscape's grid evaluation (deltaspace.grid_eval.stacked_scores, what the `landscape` rule runs)
against the reference (one grid point at a time, fp32, the plain functional forward) on the same grid points
and the same dev examples, in one process, interleaved so that drifts in machine load hit both alike.

    python benchmarks/landscape_grid.py [--points 48] [--dev-examples N] [--dev results/data/vader_movies/dev.jsonl]
                                        [--dets adapter lora prefix] [--precision auto] [--threads 2] [--repeats 5]

The DETs, backbone and number of dev examples are the embedded default's (config/config.yaml); without --dev
the examples are synthetic sentences of varied length. Prints per DET and in total: seconds of each path (the
best of the repeats: on a shared machine other work only ever slows a run down), their ratio (target: >= 2),
the FLOP/s each achieved as a fraction of a dense matmul peak measured here at the precision used, and the
agreement of every grid point's scores and dev metric with the reference.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from deltaspace.backbones import load_backbone
from deltaspace.dets import build_delta_model
from deltaspace.grid_eval import (SCORE_TOLERANCE, metric_tolerance, point_metrics, reference_scores,
                                  stacked_scores, tokenise, tokenise_by_length)
from deltaspace.hardware import autocast, configure_threads, resolve_device, resolve_precision
from deltaspace.tasks import Example, read_split

CONFIG = Path(__file__).resolve().parents[1] / "config" / "config.yaml"
WORDS = ("the film was a quiet and moving portrait of a family that never quite finds its way back home "
         "while the plot drifts and the acting stays wooden from the first scene to the last").split()


def synthetic_examples(n: int) -> list[Example]:
    """Sentences of 6 to 40 words (real dev sets vary in length too, which is what sorting exploits)."""
    generator = torch.Generator().manual_seed(0)
    examples = []
    for i in range(n):
        length = int(torch.randint(6, 41, (), generator=generator))
        words = [WORDS[j] for j in torch.randint(len(WORDS), (length,), generator=generator).tolist()]
        examples.append(Example(" ".join(words), ("negative", "positive"), i % 2))
    return examples


def matmul_peak(precision: str, device: torch.device, n: int = 2048, repeats: int = 10) -> float:
    """FLOP/s of a dense n x n matmul at the precision used (bf16: autocast, as the grid runs it); the best of
    `repeats`, since on a shared machine other work only ever slows a run down."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        with autocast(precision, device):
            a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return 2 * n**3 / min(times[1:])


def flops_per_point(model, devset, precision, device) -> int:
    """FLOPs of one vector's forward over every batch of the dev set (padding included: work the path does)."""
    vector = model.vector().to(device)
    with FlopCounterMode(display=False) as counter, torch.no_grad(), autocast(precision, device):
        for batch in devset.batches:
            model.functional_scores(vector, batch)
    return counter.get_total_flops()


def timed(fn, device):
    """(result, wall seconds, CPU seconds of this process): on a shared machine CPU time shows the work done."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=48, help="grid points per DET (the default grid has 441)")
    parser.add_argument("--dev-examples", type=int, default=None, help="default: the config's landscape.dev_examples")
    parser.add_argument("--dev", type=Path, default=None, help="a prepared dev.jsonl (default: synthetic examples)")
    parser.add_argument("--dets", nargs="+", default=["adapter", "lora", "prefix"])
    parser.add_argument("--eval-batch-size", type=int, default=64, help="the reference's batch (optimize.eval_batch_size)")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    configure_threads(args.threads)
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    config = yaml.safe_load(CONFIG.read_text())
    n_examples = args.dev_examples or config["landscape"]["dev_examples"]
    examples = (read_split(args.dev) if args.dev else synthetic_examples(n_examples))[:n_examples]
    backbone_spec = config["backbone"]

    # The reference runs fp32; the shipped path at `precision`: each is held against the peak at its own precision.
    peaks = {"reference": matmul_peak("fp32", device)}
    peaks["shipped"] = peaks["reference"] if precision == "fp32" else matmul_peak(precision, device)
    print(f"device={device} precision={precision} threads={torch.get_num_threads()} points={args.points} "
          f"dev examples={len(examples)} ({args.dev or 'synthetic'}) repeats={args.repeats}; matmul peak "
          f"{peaks['reference'] / 1e9:.1f} GFLOP/s fp32, {peaks['shipped'] / 1e9:.1f} GFLOP/s {precision}")
    totals = {"reference": 0.0, "shipped": 0.0}
    cpu_totals = {"reference": 0.0, "shipped": 0.0}
    total_flops = {"reference": 0, "shipped": 0}
    for det in args.dets:
        model = build_delta_model(load_backbone(backbone_spec, device), config["dets"][det], config["init_seed"])
        generator = torch.Generator().manual_seed(0)
        init = model.vector()
        directions = torch.randn(2, model.num_parameters, generator=generator) * 0.02
        uv = torch.rand(args.points, 2, generator=generator) * 1.5 - 0.25  # the default grid's span
        vectors = (init + uv @ directions).to(device)
        reference_set = tokenise(model.backbone, examples, "bench", device, args.eval_batch_size)
        shipped_set = tokenise_by_length(model.backbone, examples, "bench", device)
        paths = {
            "reference": lambda: reference_scores(model, vectors, args.points, reference_set),
            "shipped": lambda: stacked_scores(model, vectors, args.points, shipped_set, precision, device),
        }
        times = {name: [] for name in paths}
        cpu_times = {name: [] for name in paths}
        scores = {}
        for name, fn in paths.items():  # warm-up
            scores[name] = fn()
        for _ in range(args.repeats):
            for name, fn in paths.items():
                scores[name], seconds, cpu_seconds = timed(fn, device)
                times[name].append(seconds)
                cpu_times[name].append(cpu_seconds)
        # Best of the repeats: on a shared machine other work only ever slows a run down.
        best = {name: min(t) for name, t in times.items()}
        cpu_best = {name: min(t) for name, t in cpu_times.items()}
        flops = {"reference": flops_per_point(model, reference_set, "fp32", device) * args.points,
                 "shipped": flops_per_point(model, shipped_set, precision, device) * args.points}
        finite = torch.isfinite(scores["reference"])
        score_diff = (scores["shipped"][finite] - scores["reference"][finite]).abs().max().item()
        labels = reference_set.labels
        ref_metric = torch.tensor([m["accuracy"] for m in point_metrics(scores["reference"], labels)])
        new_metric = torch.tensor([m["accuracy"] for m in point_metrics(scores["shipped"], labels)])
        allowed = torch.tensor(metric_tolerance(scores["reference"], precision)) / len(examples)
        metric_diff = (new_metric - ref_metric).abs()
        within = bool((metric_diff <= allowed + 1e-9).all()) and score_diff <= SCORE_TOLERANCE[precision]
        for name in paths:
            totals[name] += best[name]
            cpu_totals[name] += cpu_best[name]
            total_flops[name] += flops[name]
        print(f"{det:>8}: reference {best['reference']:7.2f} s (cpu {cpu_best['reference']:7.2f} s, "
              f"{flops['reference'] / best['reference'] / peaks['reference']:5.1%} of peak)  shipped "
              f"{best['shipped']:7.2f} s (cpu {cpu_best['shipped']:7.2f} s, "
              f"{flops['shipped'] / best['shipped'] / peaks['shipped']:5.1%} of peak)  "
              f"ratio {best['reference'] / best['shipped']:.2f}x  max |score diff| {score_diff:.2e} "
              f"max |accuracy diff| {metric_diff.max().item():.4f} (allowed {allowed.max().item():.4f}) "
              f"{'OK' if within else 'OUT OF TOLERANCE'}")
    for name, value in (("reference", matmul_peak("fp32", device)), ("shipped", matmul_peak(precision, device))):
        peaks[name] = max(peaks[name], value)  # measured again after the runs: the better of the two
    print(f"   matmul peak, best of before and after: {peaks['reference'] / 1e9:.1f} GFLOP/s fp32, "
          f"{peaks['shipped'] / 1e9:.1f} GFLOP/s {precision}")
    achieved = {name: total_flops[name] / totals[name] for name in totals}
    print(f"   total: reference {totals['reference']:.2f} s, shipped {totals['shipped']:.2f} s: ratio "
          f"{totals['reference'] / totals['shipped']:.2f}x (target >= 2; CPU-time ratio "
          f"{cpu_totals['reference'] / cpu_totals['shipped']:.2f}x)")
    print(f"   achieved: reference {achieved['reference'] / 1e9:.1f} GFLOP/s = {achieved['reference'] / peaks['reference']:.1%} "
          f"of the fp32 matmul peak; shipped {achieved['shipped'] / 1e9:.1f} GFLOP/s = "
          f"{achieved['shipped'] / peaks['shipped']:.1%} of the {precision} peak, doing "
          f"{total_flops['shipped'] / total_flops['reference']:.0%} of the reference's FLOPs (less padding)")


if __name__ == "__main__":
    main()
