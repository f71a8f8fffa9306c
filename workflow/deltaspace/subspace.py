"""The unified intrinsic subspace (method.md, stage 2): per-DET down/up projections, the simplex mixing of
the DETs' points, and the joint loss. Generic over any set of DETs (their vectors only differ in length).

A DET whose dense D x r projection matrix would be too large (D * r above `dense_max_numbers`; fine-tuning)
gets Fastfood projections instead (projections.py): the same interface, memory linear in D."""
from __future__ import annotations

import json

import torch
from torch import nn

from .io import load_tensors, save_tensors, tensor_digest
from .projections import Fastfood, FastfoodDownLayer

MIXING_SCHEMES = ("paper", "dirichlet")
INITS = ("random", "joint_svd")


class DownProjection(nn.Module):
    """Linear(D -> r) -> tanh -> Linear(r -> r): a DET's delta to its point in the subspace. structured: the first
    layer is a Fastfood matrix's transpose plus a bias (FastfoodDownLayer) instead of a dense Linear."""

    def __init__(self, dim: int, rank: int, init_std: float = 0.02, structured: bool = False):
        super().__init__()
        self.first = FastfoodDownLayer(dim, rank, init_std) if structured else nn.Linear(dim, rank)
        self.second = nn.Linear(rank, rank)
        for layer in (self.second,) if structured else (self.first, self.second):
            nn.init.normal_(layer.weight, std=init_std)
            nn.init.zeros_(layer.bias)

    def forward(self, delta: torch.Tensor) -> torch.Tensor:
        return self.second(torch.tanh(self.first(delta)))


class UpProjection(nn.Module):
    """Linear(r -> D), no bias: a point in the subspace to a DET's delta."""

    def __init__(self, rank: int, dim: int, init_std: float = 0.02):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(dim, rank) * init_std)

    @property
    def rank(self) -> int:
        return self.weight.shape[1]

    @property
    def dim(self) -> int:
        return self.weight.shape[0]

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


def structured_dets(dims: dict[str, int], rank: int, dense_max_numbers: int | None) -> list[str]:
    """DETs whose dense D x r matrix would hold more than dense_max_numbers numbers (None: every DET is dense)."""
    return [det for det, dim in dims.items() if dense_max_numbers is not None and dim * rank > dense_max_numbers]


class Subspace(nn.Module):
    """Down and up projections for every DET, keyed by DET name, sharing one intrinsic dimension.
    DETs named in `structured` get Fastfood projections (see structured_dets), the others dense ones."""

    def __init__(self, dims: dict[str, int], rank: int, init_std: float = 0.02, structured=()):
        super().__init__()
        unknown = sorted(set(structured) - set(dims))
        if unknown:
            raise ValueError(f"structured projections asked for DET(s) {unknown}, which have no dimension given")
        self.rank = rank
        self.dets = list(dims)
        self.structured = [det for det in dims if det in set(structured)]
        self.down = nn.ModuleDict({det: DownProjection(dim, rank, init_std, det in self.structured)
                                   for det, dim in dims.items()})
        self.up = nn.ModuleDict({det: Fastfood(dim, rank, init_std) if det in self.structured
                                 else UpProjection(rank, dim, init_std) for det, dim in dims.items()})

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
def init_from_joint_svd(subspace: Subspace, deltas: dict[str, torch.Tensor], tanh_range: float = 0.2) -> dict[str, float]:
    """Start every DET's projections at the best joint rank-r linear fit of the training deltas (ours; the paper
    starts from N(0, 0.02) and trains 100k steps, a laptop schedule has ~100).

    deltas: det -> (tasks, D_det) rows in the same task order for every DET. The shared task coordinates Z are
    the top-r left singular vectors of the DETs' deltas side by side (each scaled to unit norm so no DET
    dominates); Up_m is the least-squares map Z -> delta_m and Down_m the one delta_m -> Z, so one task maps
    to the same point through every DET and the mixed point decodes sensibly from the first step.
    A structured (Fastfood) DET cannot hold those D x r maps: its diagonals get the closest fit its structure
    allows (fit_structured_start). Returns each DET's mean relative reconstruction error of the deltas.
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
        if det in subspace.structured:
            fit_structured_start(subspace, det, delta, z, tanh_scale)
            continue
        subspace.up[det].weight[:, :k] = (torch.linalg.pinv(z) @ delta).T
        down = subspace.down[det]
        down.first.weight[:k] = tanh_scale * wide_least_squares(delta, z).T
        down.first.bias.zero_()
        down.second.weight.copy_(torch.eye(subspace.rank, device=z.device))
        down.second.weight[:k, :k] /= tanh_scale
        down.second.bias.zero_()
    errors = {}
    for det, delta in deltas.items():
        rebuilt = subspace.decode(det, subspace.points({det: delta})[det])
        errors[det] = float(((delta - rebuilt).norm(dim=-1) / delta.norm(dim=-1).clamp_min(1e-12)).mean())
    return errors


@torch.no_grad()
def fit_structured_start(subspace: Subspace, det: str, delta: torch.Tensor, z: torch.Tensor, tanh_scale) -> None:
    """The joint-SVD start for a Fastfood DET: each diagonal is fitted in closed form to the dense start's k
    columns (Up) or first-layer rows (Down), exact for k = 1 and approximate beyond; then the small dense second
    layer of Down is solved by least squares so that the DET's training deltas still map onto Z, i.e. to the
    same points as through the dense DETs."""
    k = z.shape[1]
    up, down = subspace.up[det], subspace.down[det]
    up.fit_(torch.linalg.pinv(z) @ delta)
    down.first.matrix.fit_(tanh_scale * wide_least_squares(delta, z).T)
    down.first.bias.zero_()
    hidden = torch.tanh(down.first(delta))
    second = torch.eye(subspace.rank, device=z.device)
    second[:k] = (torch.linalg.pinv(hidden) @ z).T
    down.second.weight.copy_(second)
    down.second.bias.zero_()


def wide_least_squares(delta: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """pinv(delta) @ z for a wide (tasks, D) delta. torch.linalg.pinv's default tolerance, D * eps relative to
    the largest singular value, exceeds 1 once D > 1 / eps (8.4M in fp32) and then zeroes every direction of a
    fine-tuning delta. Here the tasks x tasks Gram matrix is summed in float64 (in slices, so no float64 copy
    of delta) and only directions below the rounding of a length-D fp32 dot product (sqrt(D) * eps) are dropped."""
    gram = sum(part.double() @ part.double().T for part in delta.split(1 << 20, dim=1))
    singular_rtol = delta.shape[1] ** 0.5 * torch.finfo(delta.dtype).eps
    inverse = torch.linalg.pinv(gram, rtol=singular_rtol ** 2, hermitian=True)  # the Gram's eigenvalues are s^2
    return delta.T @ (inverse @ z.double()).to(delta.dtype)


# ---- the subspace as a file: what stage 2 writes and every later stage reads ---------------------------------


def point_columns(table) -> list[str]:
    """The intrinsic coordinates' columns of a points table (decompose's points.csv: i0, i1, ...), in order."""
    return sorted((c for c in table.columns if c[0] == "i" and c[1:].isdigit()), key=lambda c: int(c[1:]))


def save_subspace(path, subspace: Subspace, models, inits, spec, tasks) -> None:
    """One artifact: every DET's up/down projection and init, with what is needed to rebuild the DETs."""
    tensors = {f"{kind}.{name}": t for kind, module in (("down", subspace.down), ("up", subspace.up))
               for name, t in module.state_dict().items()}
    tensors |= {f"init.{det}": v for det, v in inits.items()}
    metadata = {"dets": json.dumps(spec["dets"], sort_keys=True), "backbone": json.dumps(spec["backbone"], sort_keys=True),
                "init_seed": spec["init_seed"], "intrinsic_dim": subspace.rank, "train_tasks": json.dumps(tasks),
                "init_digests": json.dumps({det: tensor_digest(v) for det, v in inits.items()}),
                "dims": json.dumps({det: m.num_parameters for det, m in models.items()}),
                "projections": json.dumps({det: "fastfood" if det in subspace.structured else "dense"
                                           for det in subspace.dets})}
    save_tensors(path, tensors, metadata)


def load_subspace(path) -> tuple[Subspace, dict[str, torch.Tensor], dict]:
    """(subspace, {det: init vector}, metadata) from a subspace.safetensors artifact."""
    tensors, meta = load_tensors(path)
    kinds = json.loads(meta.get("projections", "{}"))  # absent: written before structured projections existed
    subspace = Subspace(json.loads(meta["dims"]), int(meta["intrinsic_dim"]),
                        structured=[det for det, kind in kinds.items() if kind == "fastfood"])
    for kind, module in (("down", subspace.down), ("up", subspace.up)):
        module.load_state_dict({k[len(kind) + 1:]: v for k, v in tensors.items() if k.startswith(kind + ".")})
    inits = {k[len("init."):]: v for k, v in tensors.items() if k.startswith("init.")}
    return subspace, inits, meta
