"""Collect the stage-1 deltas of one DET into a matrix (rows: task x seed) with an index table."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .io import atomic_path, load_tensors, save_tensors
from .files import DELTA_FILE


def collect_vectors(det: str, run_dirs: list[str | Path], out_dir: str | Path) -> pd.DataFrame:
    """Writes {det}.safetensors (tensor `deltas`, rows in index order) and {det}_index.csv."""
    import torch

    rows, deltas, reference = [], [], None
    for run_dir in sorted(Path(d) for d in run_dirs):
        tensors, meta = load_tensors(run_dir / DELTA_FILE)
        if meta.get("det") != det:
            raise ValueError(f"{run_dir / DELTA_FILE} holds DET {meta.get('det')!r}, not {det!r}")
        # Deltas are only comparable when every row shares theta_init and the tensor layout.
        layout = (meta["init_digest"], meta["tensor_names"], meta["backbone"])
        if reference is None:
            reference, reference_dir = layout, run_dir
        elif layout != reference:
            raise ValueError(f"{run_dir} and {reference_dir} were trained from different inits or layouts of DET "
                             f"{det!r}; retrain them with the same init_seed and backbone")
        rows.append({"row": len(rows), "task": meta["task"], "seed": int(meta["seed"]), "det": det,
                     "method": meta["method"], "source": str(run_dir / DELTA_FILE)})
        deltas.append(tensors["delta"])
    if not rows:
        raise ValueError(f"collect_vectors: no stage-1 runs given for DET {det!r}")
    out_dir = Path(out_dir)
    index = pd.DataFrame(rows)
    save_tensors(out_dir / f"{det}.safetensors", {"deltas": torch.stack(deltas)},
                 {**{k: meta[k] for k in ("method", "det_spec", "init_seed", "backbone", "backbone_kind",
                                          "tensor_names", "tensor_shapes", "num_parameters", "init_digest")},
                  "det": det, "rows": json.dumps(index[["task", "seed"]].values.tolist())})
    with atomic_path(out_dir / f"{det}_index.csv") as tmp:
        index.to_csv(tmp, index=False)
    return index
