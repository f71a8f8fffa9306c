"""Time what a model job costs besides its work (issue 20), side by side in one run:

(a) start-up: a stage-1 job (`python -m deltaspace original`, as the rule runs it) from process start to its first
    training step, against a bare script that imports torch and transformers and loads the same backbone
    (target: ratio <= 1.3). The job trains on a small synthetic task (dev and test of a few examples), so that
    its theta_init evaluations before the first step stay small; each child process is timed from the parent's
    launch to the moment it prints, repeats interleaved, the best kept.
(b) stage 3: the three subspaces' intrinsic vectors (learned, joint-SVD, random) trained together
    (intrinsic_batched.train_intrinsic_batched, what `optimize` runs) against the one-at-a-time loop
    (optimize.train_intrinsic, three calls), both with their dev and test scoring, on the embedded default's
    stage-3 settings (target: ratio >= 2); also the best training point's dev scoring, batched against one
    point at a time. Each line says whether both paths made the same choices and how far their points differ.

    python benchmarks/job_startup.py [--dets lora] [--threads 1] [--precision auto] [--repeats 2]

The backbone, DETs, split sizes and stage-3 settings are the embedded default's (config/config.yaml); the
examples are synthetic sentences of varied length (benchmarks/landscape_grid.py's).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

from landscape_grid import CONFIG, synthetic_examples, timed

from deltaspace.backbones import resolve_model_path
from deltaspace.hardware import machine_description, resolve_device, resolve_precision
from deltaspace.intrinsic_batched import train_intrinsic_batched
from deltaspace.job import start_job
from deltaspace.optimize import best_train_point, tokenised_batches, train_intrinsic
from deltaspace.subspace import UpProjection

# The job's child process: a global optimizer pre-step hook prints the wall clock at its first training step and
# ends the process (what comes after is the job's work, not its start-up).
JOB_CHILD = """
import os, sys, time
from torch.optim.optimizer import register_optimizer_step_pre_hook
def first_step(*args):
    print(f"FIRST_STEP {time.time()}", flush=True)
    os._exit(0)
register_optimizer_step_pre_hook(first_step)
from deltaspace.cli import main
sys.exit(main(sys.argv[1:]))
"""
BARE_CHILD = """
import sys, time
import torch
import transformers
from transformers import AutoModel, AutoTokenizer
torch.set_num_threads(int(sys.argv[2]))
AutoTokenizer.from_pretrained(sys.argv[1])
AutoModel.from_pretrained(sys.argv[1], attn_implementation="sdpa", dtype=torch.float32).eval()
print(f"LOADED {time.time()}", flush=True)
"""


def write_task(folder: Path, sizes: dict[str, int]) -> Path:
    """A prepared task (prepare_task's files) of synthetic examples."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in sizes.items():
        rows = [{"input": e.input, "candidates": list(e.candidates), "label": e.label} for e in synthetic_examples(n)]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "task.json").write_text(json.dumps({"primary_metric": "accuracy", "majority_test_accuracy": 0.5}))
    return folder


def child_seconds(code: str, args: list[str], marker: str, threads: int) -> float:
    """Seconds from launching `python -c code args` to the wall-clock time it prints after `marker`."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    launched = time.time()
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=600)
    stamps = [line.split()[1] for line in done.stdout.splitlines() if line.startswith(marker)]
    if not stamps:
        raise SystemExit(f"the child printed no {marker} line:\n{done.stdout}\n{done.stderr}")
    return float(stamps[0]) - launched


def startup(config: dict, det: str, threads: int, repeats: int, folder: Path) -> tuple[float, float]:
    """(job, bare) seconds, the best of `repeats` interleaved runs each."""
    data = write_task(folder / "data", {"train": 32, "dev": 8, "test": 8})
    spec = {key: config[key] for key in ("backbone", "init_seed", "precision", "device")}
    spec |= {"det": config["dets"][det], "original": config["original"]}
    job_args = ["original", "--task", "bench", "--det", det, "--seed", "42", "--spec", json.dumps(spec),
                "--data", str(data), "--out", str(folder / "out"), "--checkpoint", str(folder / "ck" / "last.pt"), "--threads", str(threads)]
    bare_args = [resolve_model_path(config["backbone"]["name_or_path"]), str(threads)]
    job, bare = [], []
    for _ in range(repeats):
        (folder / "ck" / "last.pt").unlink(missing_ok=True)  # a fresh start each time, never a resume
        job.append(child_seconds(JOB_CHILD, job_args, "FIRST_STEP", threads))
        bare.append(child_seconds(BARE_CHILD, bare_args, "LOADED", threads))
    return min(job), min(bare)


def random_ups(rank: int, dim: int, n: int = 3) -> list[UpProjection]:
    """Stand-ins for the learned, joint-SVD and random up-projections (their values do not change the work)."""
    torch.manual_seed(0)
    return [UpProjection(rank, dim, init_std=0.5 / dim**0.5) for _ in range(n)]


def quiet(message: str) -> None:
    """The stages' log, silenced while timed."""


def agreement(sequential: list[dict], batched: list[dict]) -> str:
    """How far the batched runs' choices, scores and points are from the sequential ones'."""
    same = all((s["lr"], s["best_step"]) == (b["lr"], b["best_step"]) for s, b in zip(sequential, batched))
    dev, test = (max(abs(s[key] - b[key]) for s, b in zip(sequential, batched)) for key in ("dev", "test"))
    gap = max(float((s["point"] - b["point"]).abs().max()) for s, b in zip(sequential, batched))
    return (f"lr and step {'equal' if same else 'DIFFER'}, |dev| <= {dev:.3f}, |test| <= {test:.3f}, "
            f"points within {gap:.1e}")


def stage3(config: dict, det: str, threads: int, repeats: int) -> list[tuple[str, float, float, str]]:
    """Per timed part: (what, sequential seconds, batched seconds, agreement), the best of `repeats` each."""
    job = start_job(config, threads, dets={det: config["dets"][det]})
    stage = config["optimize"]
    splits = {name: synthetic_examples(n) for name, n in config["split_sizes"].items()}
    batches = tokenised_batches(job.backbone, splits, "bench", stage, 42, job.device)
    ups = random_ups(config["decompose"]["intrinsic_dim"], job.models[det].num_parameters)
    points = pd.DataFrame(
        [{"task": f"t{k}", "seed": 42, "det": det, **{f"i{j}": float(v) for j, v in enumerate(torch.randn(4))}}
         for k in range(15)])  # the default's 5 training tasks x 3 DETs
    parts = {"train 3 subspaces": (
        lambda: [train_intrinsic(job, det, up, batches, stage, 42, "accuracy", quiet) for up in ups],
        lambda: train_intrinsic_batched(job, det, ups, batches, stage, 42, "accuracy", quiet)),
        "best training point (15)": (
        lambda: [best_train_point(job, det, ups[0], points, batches, "accuracy", batched=False)],
        lambda: [best_train_point(job, det, ups[0], points, batches, "accuracy", batched=True)])}
    rows = []
    for name, (sequential, batched) in parts.items():
        seconds = {"sequential": [], "batched": []}
        for _ in range(repeats):
            out_s, wall_s, _ = timed(sequential, job.device)
            out_b, wall_b, _ = timed(batched, job.device)
            seconds["sequential"].append(wall_s)
            seconds["batched"].append(wall_b)
        if "point" in out_s[0]:
            verdict = agreement(out_s, out_b)
        else:
            same = [(s["dev"], s["from"]) for s in out_s] == [(b["dev"], b["from"]) for b in out_b]
            verdict = f"{'same' if same else 'DIFFERENT'} point chosen"
        rows.append((name, min(seconds["sequential"]), min(seconds["batched"]), verdict))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dets", nargs="+", default=["lora"], help="DETs of config/config.yaml")
    parser.add_argument("--threads", type=int, default=1, help="the default's optimize and original jobs get 1")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=2, help="timed repeats; the best is kept")
    parser.add_argument("--skip", choices=("startup", "stage3"), default=None, help="run only the other part")
    args = parser.parse_args()
    config = yaml.safe_load(CONFIG.read_text()) | {"precision": args.precision, "device": args.device}
    device = resolve_device(args.device)
    print(f"machine: {machine_description(device)}; precision {resolve_precision(args.precision, device)}; "
          f"threads {args.threads}; "
          f"repeats {args.repeats} (best kept)")
    if args.skip != "startup":
        with tempfile.TemporaryDirectory(prefix="deltaspace-startup-") as scratch:
            job_s, bare_s = startup(config, args.dets[0], args.threads, args.repeats, Path(scratch))
        print(f"(a) start-up, {args.dets[0]}: job to first step {job_s:.2f} s | bare torch+transformers+backbone "
              f"{bare_s:.2f} s | ratio {job_s / bare_s:.2f}x (target <= 1.3)")
    if args.skip != "stage3":
        total = {"sequential": 0.0, "batched": 0.0}
        for det in args.dets:
            for name, sequential, batched, verdict in stage3(config, det, args.threads, args.repeats):
                print(f"(b) stage 3, {det}, {name}: sequential {sequential:.2f} s | batched {batched:.2f} s | "
                      f"ratio {sequential / batched:.2f}x | {verdict}")
                if name.startswith("train"):
                    total["sequential"] += sequential
                    total["batched"] += batched
        print(f"(b) stage 3 training, all DETs: ratio {total['sequential'] / total['batched']:.2f}x (target >= 2)")


if __name__ == "__main__":
    main()
