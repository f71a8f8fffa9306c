"""The unified intrinsic subspace (method.md, stage 2): per-DET down/up projections, the simplex mixing of
the DETs' points, and the joint loss. Generic over any set of DETs (their vectors only differ in length)."""
from __future__ import annotations

import torch
from torch import nn

MIXING_SCHEMES = ("paper", "dirichlet")
INITS = ("random", "joint_svd")


class DownProjection(nn.Module):
    """Linear(D -> r) -> tanh -> Linear(r -> r): a DET's delta to its point in the subspace."""

    def __init__(self, dim: int, rank: int, init_std: float = 0.02):
        super().__init__()
        self.first = nn.Linear(dim, rank)
        self.second = nn.Linear(rank, rank)
        for layer in (self.first, self.second):
            nn.init.normal_(layer.weight, std=init_std)
            nn.init.zeros_(layer.bias)

    def forward(self, delta: torch.Tensor) -> torch.Tensor:
        return self.second(torch.tanh(self.first(delta)))


class UpProjection(nn.Module):
    """Linear(r -> D), no bias: a point in the subspace to a DET's delta."""

    def __init__(self, rank: int, dim: int, init_std: float = 0.02):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(dim, rank) * init_std)

    def forward(self, point: torch.Tensor) -> torch.Tensor:
        return point @ self.weight.T


def simplex_weights(n: int, scheme: str = "paper", generator: torch.Generator | None = None) -> torch.Tensor:
    """A random point of the simplex over n DETs: non-negative weights summing to one.

    paper: the reference code's stick breaking (alpha ~ U(0,1), beta ~ U(0, 1 - alpha), rest), extended to
    any n; dirichlet: uniform over the simplex (flat Dirichlet)."""
    if scheme == "paper":
        weights, left = [], 1.0
        for _ in range(n - 1):
            w = float(torch.rand((), generator=generator)) * left
            weights.append(w)
            left -= w
        return torch.tensor(weights + [left])
    if scheme == "dirichlet":
        e = -torch.log(torch.rand(n, generator=generator).clamp_min(1e-12))
        return e / e.sum()
    raise ValueError(f"mixing={scheme!r}: allowed are {', '.join(MIXING_SCHEMES)}")


class Subspace(nn.Module):
    """Down and up projections for every DET, keyed by DET name, sharing one intrinsic dimension."""

    def __init__(self, dims: dict[str, int], rank: int, init_std: float = 0.02):
        super().__init__()
        self.rank = rank
        self.dets = list(dims)
        self.down = nn.ModuleDict({det: DownProjection(dim, rank, init_std) for det, dim in dims.items()})
        self.up = nn.ModuleDict({det: UpProjection(rank, dim, init_std) for det, dim in dims.items()})

    def points(self, deltas: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {det: self.down[det](delta) for det, delta in deltas.items()}

    def decode(self, det: str, point: torch.Tensor) -> torch.Tensor:
        return self.up[det](point)

    def reconstruction_loss(self, deltas: dict[str, torch.Tensor], points: dict[str, torch.Tensor]) -> torch.Tensor:
        """Sum over DETs of the plain (not squared) L2 distance between a delta and its reconstruction."""
        return sum(torch.linalg.vector_norm(deltas[d] - self.decode(d, points[d]), dim=-1).mean() for d in deltas)

    @staticmethod
    def mix(points: dict[str, torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
        return sum(w * p for w, p in zip(weights, points.values()))


@torch.no_grad()
def init_from_joint_svd(subspace: Subspace, deltas: dict[str, torch.Tensor], tanh_range: float = 0.2) -> None:
    """Start every DET's projections at the best joint rank-r linear fit of the training deltas (ours; the paper
    starts from N(0, 0.02) and trains 100k steps, a laptop schedule has ~100).

    deltas: det -> (tasks, D_det) rows in the same task order for every DET. The shared task coordinates Z are
    the top-r left singular vectors of the DETs' deltas side by side (each scaled to unit norm so no DET
    dominates); Up_m is the least-squares map Z -> delta_m and Down_m the one delta_m -> Z, so one task maps
    to the same point through every DET and the mixed point decodes sensibly from the first step.
    """
    joined = torch.cat([d / d.norm().clamp_min(1e-12) for d in deltas.values()], dim=1)
    u, _, _ = torch.linalg.svd(joined, full_matrices=False)
    # With fewer tasks than r, only k directions are fitted; the rest keep their random start so that
    # stage 2's task loss and stage 3 can still use them (zeros would get no gradient, ever).
    k = min(subspace.rank, u.shape[1])
    z = u[:, :k]
    # Pre-activations of at most tanh_range keep tanh near-linear (tanh(0.2) = 0.197); layer two undoes the scale.
    tanh_scale = tanh_range / z.abs().max().clamp_min(1e-12)
    for det, delta in deltas.items():
        subspace.up[det].weight[:, :k] = (torch.linalg.pinv(z) @ delta).T
        down = subspace.down[det]
        down.first.weight[:k] = tanh_scale * (torch.linalg.pinv(delta) @ z).T
        down.first.bias.zero_()
        down.second.weight.copy_(torch.eye(subspace.rank, device=z.device))
        down.second.weight[:k, :k] /= tanh_scale
        down.second.bias.zero_()
