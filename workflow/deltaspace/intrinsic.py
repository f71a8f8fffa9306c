"""One intrinsic vector's run over stage 3's lr grid, the parts the sequential loop (optimize.train_intrinsic)
and the batched one (intrinsic_batched.py) share, so that both start, evaluate and choose alike: the seeded
start, scored on dev as step 0, when dev is scored, the best dev evaluation (tasks.improves) and the test score
of that one alone."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .tasks import improves


def start_point(rank: int, seed: int, device) -> torch.Tensor:
    """Every lr's (and every subspace's) seeded start, a leaf to train."""
    start = torch.randn(rank, generator=torch.Generator().manual_seed(seed)) * 0.02
    return start.to(device).requires_grad_(True)


def evaluates(done: int, stage: dict) -> bool:
    """Whether dev is scored after `done` steps: every eval_every steps, and after the last."""
    return done % stage["eval_every"] == 0 or done == stage["steps"]


@dataclass
class Selection:
    """One vector's dev evaluations over the lr grid, recorded in lr order after the shared start, and the best so far."""

    history: list[dict] = field(default_factory=list)
    best: dict | None = None

    def start(self, lrs: list[float], dev: float, point: torch.Tensor) -> None:
        """Step 0, the seeded start every lr shares: a candidate like any later step (lr None: no training), so a
        grid that only loses dev keeps its start, as stage 1 keeps theta_init. Each lr's curve begins here."""
        self.history.extend({"lr": lr, "step": 0, "train_loss": None, "dev": dev} for lr in lrs)
        self.best = {"dev": dev, "lr": None, "step": 0, "point": point.detach().clone()}

    def record(self, lr: float, step: int, train_loss: float, dev: float, point: torch.Tensor) -> None:
        self.history.append({"lr": lr, "step": step, "train_loss": train_loss, "dev": dev})
        if improves(dev, None if self.best is None else self.best["dev"]):
            self.best = {"dev": dev, "lr": lr, "step": step, "point": point.detach().clone()}

    def summary(self, lr: float) -> str:
        best = self.best
        return f"[optimize] lr {lr}: best dev so far {best['dev']:.4f} (lr {best['lr']}, step {best['step']})"

    def result(self, job, det: str, up, batches: dict, primary: str) -> dict:
        """The kept point, its dev score and lr, the history; test (when the batches hold it) scored at it alone."""
        best = self.best
        result = {"dev": best["dev"], "test": None, "test_metrics": None, "predictions": None, "lr": best["lr"],
                  "best_step": best["step"], "point": best["point"].cpu(), "history": self.history}
        if "test" in batches:
            result["test_metrics"], result["predictions"] = job.score_examples(
                det, job.decode(det, up, best["point"]), batches["test"])
            result["test"] = result["test_metrics"][primary]
        return result
