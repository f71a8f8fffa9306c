"""Collect the stage-1 deltas of one DET into a matrix (rows: task x seed) with an index table."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .io import atomic_path, load_tensors, save_tensors
from .paths import OriginalRun, Vectors, file_in


def collect_vectors(det: str, delta_files: list[str | Path], out) -> pd.DataFrame:
    """Stacks stage-1 delta files (or OriginalRun folders) into the Vectors files `out` (or into that folder): a
    matrix (tensor `deltas`, rows in index order) and its index table."""
    import torch

    out = Vectors.of(out).formatted(det=det)  # a folder's standard names hold {det}
    rows, deltas, reference = [], [], None
    for delta_file in sorted((file_in(p, OriginalRun, "delta") for p in delta_files), key=lambda p: p.parent):
        tensors, meta = load_tensors(delta_file)
        if meta.get("det") != det:
            raise ValueError(f"{delta_file} holds DET {meta.get('det')!r}, not {det!r}")
        # Deltas are only comparable when every row shares theta_init and the tensor layout.
        layout = (meta["init_digest"], meta["tensor_names"], meta["backbone"])
        if reference is None:
            reference, reference_file = layout, delta_file
        elif layout != reference:
            raise ValueError(f"{delta_file} and {reference_file} were trained from different inits or layouts of DET "
                             f"{det!r}; retrain them with the same init_seed and backbone")
        rows.append({"row": len(rows), "task": meta["task"], "seed": int(meta["seed"]), "det": det,
                     "method": meta["method"], "source": str(delta_file)})
        deltas.append(tensors["delta"])
    if not rows:
        raise ValueError(f"collect_vectors: no stage-1 runs given for DET {det!r}")
    index = pd.DataFrame(rows)
    save_tensors(out.matrix, {"deltas": torch.stack(deltas)},
                 {**{k: meta[k] for k in ("method", "det_spec", "init_seed", "backbone", "backbone_kind",
                                          "tensor_names", "tensor_shapes", "num_parameters", "init_digest")},
                  "det": det, "rows": json.dumps(index[["task", "seed"]].values.tolist())})
    with atomic_path(out.index) as tmp:
        index.to_csv(tmp, index=False)
    return index
