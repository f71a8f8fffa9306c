"""Transfer: decode the intrinsic vector found through source DET s into every DET t (init_t + Up_t(I*)) and
evaluate on test with no further training."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from .evaluate import evaluate, prepare_batches
from .hardware import autocast, job_setup
from .io import atomic_path, read_json, tensor_digest
from .stage1 import load_task_splits
from .stage2 import check_inits, load_det_models, load_subspace
from .stage3 import RESULT_FILE


def transfer(task: str, seed: int, spec: dict, subspace_path: str | Path, stage3_dirs: dict[str, str | Path],
             data_dir: str | Path, out: str | Path, threads: int | None = None, log=print) -> pd.DataFrame:
    """Writes a CSV with one row per (source DET, target DET): the target's test score at init_t + Up_t(I*_s)."""
    device, precision = job_setup(spec, threads)
    splits, task_info = load_task_splits(Path(data_dir), task)
    primary = task_info.get("primary_metric", "accuracy")
    subspace, inits, _ = load_subspace(subspace_path)
    subspace = subspace.to(device)
    models = load_det_models(spec, device)
    check_inits(models, {det: tensor_digest(v) for det, v in inits.items()}, subspace_path)
    backbone = next(iter(models.values())).backbone
    test_batches = prepare_batches(backbone, splits["test"], spec["stage3"]["eval_batch_size"], task, device)
    rows = []
    for source, folder in stage3_dirs.items():
        result_path = Path(folder) / RESULT_FILE
        point = torch.tensor(read_json(result_path, what="stage-3 result")["intrinsic"], device=device)
        for target, model in models.items():
            with torch.no_grad(), autocast(precision, device):
                vector = inits[target].to(device) + subspace.decode(target, point)
                score = evaluate(lambda b: model.functional_scores(vector, b), test_batches)[primary]
            rows.append({"task": task, "seed": seed, "source_det": source, "target_det": target, "score": score,
                         "source": str(result_path)})
            log(f"[transfer] {task}: {source} -> {target} test {primary} {score:.4f}")
    table = pd.DataFrame(rows)
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")
    return table
