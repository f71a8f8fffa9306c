"""Transfer: decode the intrinsic vector found through source DET s into every DET t (init_t + Up_t(I*)) and
evaluate on test with no further training."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from .evaluate import predictions_table
from .io import read_json, tensor_digest, write_csv
from .job import load_task_splits, start_job
from .paths import OptimizeRun, file_in
from .subspace import load_subspace


def transfer(task: str, seed: int, spec: dict, subspace_path: str | Path, results: dict[str, str | Path], data,
             out: str | Path, predictions_out: str | Path | None = None, threads: int | None = None,
             log=print) -> pd.DataFrame:
    """Writes a CSV with one row per (source DET, target DET): the target's test score at init_t + Up_t(I*_s),
    and (predictions_out) every test prediction, one column per source->target pair.
    results: each source DET's optimize result file (or its OptimizeRun folder); data: TaskData or folder."""
    splits, task_info = load_task_splits(data, task)
    primary = task_info.get("primary_metric", "accuracy")
    subspace, inits, _ = load_subspace(subspace_path)
    job = start_job(spec, threads, init_digests={det: tensor_digest(v) for det, v in inits.items()},
                    source=subspace_path)
    subspace = subspace.to(job.device)
    form = job.task_format(task, task_info, splits["train"])
    test_batches = job.batches(splits["test"], form, spec["optimize"]["eval_batch_size"])
    rows, predictions = [], {}
    for source, given in results.items():
        result_path = file_in(given, OptimizeRun, "result")
        point = torch.tensor(read_json(result_path, what="stage-3 result")["intrinsic"], device=job.device)
        for target in job.models:
            metrics, predictions[f"{source}->{target}"] = job.score_examples(
                target, job.decode(target, subspace.up[target], point), test_batches)
            score = metrics[primary]  # computed from the predicted texts when read (tasks.Scores)
            rows.append({"task": task, "seed": seed, "source_det": source, "target_det": target, "score": score,
                         "source": str(result_path)})
            log(f"[transfer] {task}: {source} -> {target} test {primary} {score:.4f}")
    table = pd.DataFrame(rows)
    if predictions_out is not None:
        write_csv(predictions_out, predictions_table(predictions))
    write_csv(out, table, float_format="%.4f")
    return table
