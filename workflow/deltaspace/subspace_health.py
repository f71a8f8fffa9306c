"""How healthy a subspace is on its training deltas (stage 2's diagnostics): how well each DET's deltas are
reconstructed, how many down-projection units sit in tanh's flat tails, how far the points lie from the
origin; and, in words, whether the subspace stage 2 saved is worse than the one it started from."""
from __future__ import annotations

import torch

from .subspace import Subspace

SATURATED = 0.99  # |tanh| above this: the unit passes almost only the sign of its pre-activation
# The bars a saved subspace is held to against its start (issue 19's definition of a stage 2 that learns).
ERROR_TOLERANCE = 0.05
MAX_SATURATED_SHARE = 0.05


@torch.no_grad()
def diagnose(subspace: Subspace, rows: dict[str, torch.Tensor]) -> dict[str, dict[str, float]]:
    """Per DET, over its training deltas `rows` (det -> (n, D)): relative_error (mean of ||delta - Up(Down(delta))||
    / ||delta||; 1 is no better than reconstructing nothing), saturated (share of down-projection units with
    |tanh| > SATURATED, over every delta and unit) and point_norm (mean ||Down(delta)||)."""
    report = {}
    for det, delta in rows.items():
        down = subspace.down[det]
        hidden = torch.tanh(down.first(delta))
        points = down.second(hidden)
        rebuilt = subspace.decode(det, points)
        errors = torch.linalg.vector_norm(delta - rebuilt, dim=-1) / torch.linalg.vector_norm(delta, dim=-1).clamp_min(1e-12)
        report[det] = {"relative_error": float(errors.mean()),
                       "saturated": float((hidden.abs() > SATURATED).float().mean()),
                       "point_norm": float(torch.linalg.vector_norm(points, dim=-1).mean())}
    return report


def health_warnings(start: dict, saved: dict, last: dict | None = None) -> list[str]:
    """Sentences naming every way the saved subspace is worse than its start (empty: none). start, saved, last:
    history entries (step, dev_mixed, dets: diagnose's report); `last`, when it is not the saved one, adds
    whether training itself wrecked what it started from, which a kept start would otherwise hide."""
    said = [f"the saved subspace (step {saved['step']}) {problem}" for problem in _worse(start, saved)]
    if last is not None and last["step"] != saved["step"]:
        said += [f"training ended worse than it started: the last checkpoint (step {last['step']}) {problem}"
                 for problem in _worse(start, last)]
    return said


def _worse(start: dict, entry: dict) -> list[str]:
    problems = []
    for det, now in entry["dets"].items():
        before = start["dets"][det]["relative_error"]
        if now["relative_error"] > before + ERROR_TOLERANCE:
            nothing = ", worse than reconstructing nothing" if now["relative_error"] > 1 else ""
            problems.append(f"reconstructs {det}'s training deltas with relative error {now['relative_error']:.3f} "
                            f"against the start's {before:.3f}{nothing}")
        if now["saturated"] > MAX_SATURATED_SHARE:
            problems.append(f"has {now['saturated']:.0%} of {det}'s down-projection units saturated (|tanh| > "
                            f"{SATURATED}), so its points carry little more than signs")
    if entry["dev_mixed"] < start["dev_mixed"]:
        problems.append(f"scores {entry['dev_mixed']:.4f} mixed dev against the start's {start['dev_mixed']:.4f}")
    return problems
