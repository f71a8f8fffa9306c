"""decompose_sweep: stage 2 rerun on one run's stage-1 vectors under several settings, one table row each.

How stage 2's optimizer, lr, steps (any `decompose` key) were chosen: each setting overrides the run's own
decompose section and is trained from the same start; the row holds the start's and the saved subspace's
diagnostics (subspace_health) and the warnings, so a setting that wrecks its start shows in one line."""
from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import pandas as pd

from .decompose import decompose
from .io import write_csv
from .paths import Decomposition


def sweep_row(setting: dict, metrics: dict) -> dict:
    """One setting's line: what it changed, then start -> saved per diagnostic and DET."""
    row = {"setting": ", ".join(f"{k}={v}" for k, v in setting.items()), "best_step": metrics["best_step"],
           "start_dev_mixed": metrics["start"]["dev_mixed"], "saved_dev_mixed": metrics["saved"]["dev_mixed"],
           "last_dev_mixed": metrics["history"][-1]["dev_mixed"]}
    for when in ("start", "saved"):
        for det, values in metrics[when]["dets"].items():
            row |= {f"{when}_{name}_{det}": value for name, value in values.items()}
    # The last evaluation too: a setting whose best is its start can still have trained somewhere.
    for det, values in metrics["history"][-1]["dets"].items():
        row |= {f"last_{name}_{det}": value for name, value in values.items()}
    return row | {"warnings": " | ".join(metrics["warnings"]), "seconds": metrics["seconds"]}


def decompose_sweep(spec: dict, vectors, data: dict, settings: list[dict], out, threads: int | None = None,
                    log=print) -> pd.DataFrame:
    """Runs decompose once per setting (a dict of `decompose` keys over spec's) and writes the table `out`."""
    rows = []
    for setting in settings:
        unknown = sorted(set(setting) - set(spec["decompose"]))
        if unknown:
            raise ValueError(f"decompose_sweep: setting {setting} names key(s) {unknown} that the decompose "
                             f"section does not have ({sorted(spec['decompose'])})")
        run_spec = copy.deepcopy(spec)
        run_spec["decompose"].update(setting)
        log(f"[decompose_sweep] {setting}")
        with tempfile.TemporaryDirectory() as scratch:
            metrics = decompose(run_spec, vectors, data, Decomposition.at(Path(scratch)), Path(scratch) / "last.pt",
                                threads=threads, log=log)
        rows.append(sweep_row(setting, metrics))
    table = pd.DataFrame(rows)
    write_csv(out, table)
    return table
