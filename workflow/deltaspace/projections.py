"""Fastfood projections between a DET's D numbers and the r-dim subspace, for DETs whose dense D x r matrix would
not fit (fine-tuning: D is the backbone's size). Memory is linear in D: one learned diagonal and one permutation.

The matrix is M = trunc_D(H G Pi H B) / sqrt(L) (Le, Sarlos and Smola 2013; used for intrinsic dimension by Li
et al. 2018 and Aghajanyan et al. 2021): H the L x L Walsh-Hadamard matrix (L the power of two >= D), G a learned
diagonal, Pi a fixed permutation, B fixed random signs. Ours, not a library's: no pinned package ships a
differentiable Fastfood, and it is a few lines of tensor algebra. The up direction applies M (r -> D), the down
direction its transpose (D -> r), so both cost O(L log L) time and O(L) memory.
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

# H_L = H_a (x) H_b (x) ...: a few small matmuls (passes over memory) instead of log2(L) butterfly passes.
HADAMARD_BLOCK = 128


@functools.lru_cache(maxsize=16)
def hadamard_matrix(n: int, device: str = "cpu") -> torch.Tensor:
    """The unnormalised Sylvester-ordered n x n Hadamard matrix (n a power of two)."""
    h = torch.ones(1, 1, device=device)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h


def walsh_hadamard(x: torch.Tensor) -> torch.Tensor:
    """H x along the last dimension (length a power of two), unnormalised, differentiable.

    Views x as an (a_1, ..., a_p) array with every a_i <= HADAMARD_BLOCK, multiplies the last axis by its
    Hadamard block and rotates that axis to the front; after p steps every axis is done and back in place."""
    n = x.shape[-1]
    if n & (n - 1):
        raise ValueError(f"walsh_hadamard: length {n} is not a power of two")
    lead = x.shape[:-1]
    remaining = n
    while remaining > 1:
        block = min(HADAMARD_BLOCK, remaining)
        h = hadamard_matrix(block, str(x.device)).to(x.dtype)
        x = (x.reshape(*lead, n // block, block) @ h).transpose(-1, -2).reshape(*lead, n)
        remaining //= block
    return x


def fastfood_length(dim: int) -> int:
    """The smallest power of two >= dim."""
    return 1 << (max(dim, 1) - 1).bit_length()


class Fastfood(nn.Module):
    """The D x r matrix M = trunc_D(H G Pi H B) / sqrt(L), never materialised. `forward` (r -> D) is an up
    projection; `transposed` (D -> r) is the first layer of a down projection.

    G ~ N(0, init_std^2) gives M's entries the same distribution as a dense N(0, init_std^2) matrix, and keeps
    G's entries on a dense weight's scale so that optimizers step them as they step dense weights.
    The input side is only r long, so M uses little of B and Pi: B's first r signs, and Pi's values modulo R
    (R the power of two >= r), since H's first R columns repeat with period R. Storing exactly that makes the
    inner H an R-point transform and a gather: one length-L transform per direction instead of two.
    """

    def __init__(self, dim: int, rank: int, init_std: float = 0.02, generator: torch.Generator | None = None):
        super().__init__()
        self.dim, self.rank = dim, rank
        self.length, self.width = fastfood_length(max(dim, rank)), fastfood_length(rank)
        self.diagonal = nn.Parameter(torch.randn(self.length, generator=generator) * init_std)
        permutation = torch.randperm(self.length, generator=generator)
        self.register_buffer("permutation_mod_width", (permutation % self.width).to(torch.int32))
        self.register_buffer("signs", torch.randint(0, 2, (rank,), generator=generator).float() * 2 - 1)

    def _fp32(self, x: torch.Tensor):
        """A chain of transforms would compound bf16 rounding: always fp32, whatever autocast says."""
        return torch.autocast(device_type=x.device.type, enabled=False), x.float()

    def forward(self, point: torch.Tensor) -> torch.Tensor:
        """M @ point: (..., r) -> (..., D)."""
        no_autocast, x = self._fp32(point)
        with no_autocast:
            x = walsh_hadamard(F.pad(x * self.signs, (0, self.width - self.rank)))  # H B, first R rows
            x = x.index_select(-1, self.permutation_mod_width) * self.diagonal  # G Pi H B
            return walsh_hadamard(x)[..., : self.dim] / math.sqrt(self.length)

    def transposed(self, delta: torch.Tensor) -> torch.Tensor:
        """M.T @ delta: (..., D) -> (..., r)."""
        no_autocast, x = self._fp32(delta)
        with no_autocast:
            x = walsh_hadamard(F.pad(x, (0, self.length - self.dim))) * self.diagonal  # G H
            # Pi.T then H's first R rows: sum the entries that share a value of Pi modulo R, then an R-point H.
            x = x.new_zeros(*x.shape[:-1], self.width).index_add(-1, self.permutation_mod_width, x)
            return walsh_hadamard(x)[..., : self.rank] * self.signs / math.sqrt(self.length)

    def _column_pattern(self, j: int) -> torch.Tensor:
        """The signs s_j = (Pi H B)[:, j], so that M[:, j] = trunc_D(H (G * s_j)) / sqrt(L)."""
        x = torch.zeros(self.width, device=self.diagonal.device)
        x[j] = self.signs[j]
        return walsh_hadamard(x).index_select(-1, self.permutation_mod_width)

    @torch.no_grad()
    def fit_(self, columns) -> None:
        """Set G to the least-squares fit of M[:, j] to columns[j] (k rows of D numbers), each zero-padded to L:
        exact for one column; with k columns each entry of G is shared by k targets and about 1/k of their
        energy is kept, the price of memory linear in D. Used by the joint-SVD start."""
        total, k = torch.zeros_like(self.diagonal), 0
        for j, column in enumerate(columns):
            padded = F.pad(column.float(), (0, self.length - self.dim))
            # H / sqrt(L) is orthogonal: match G * s_j to H t_j / sqrt(L) entry by entry.
            total += self._column_pattern(j) * walsh_hadamard(padded) / math.sqrt(self.length)
            k += 1
        self.diagonal.copy_(total / max(k, 1))

    @torch.no_grad()
    def frobenius_norm(self) -> torch.Tensor:
        """Column by column: never an r x D block in memory."""
        eye = torch.eye(self.rank, device=self.diagonal.device)
        return torch.stack([self(eye[j]).norm() for j in range(self.rank)]).norm()

    def random_like(self, generator: torch.Generator, frobenius_norm: torch.Tensor | float) -> "Fastfood":
        """An untrained Fastfood of the same size, scaled to the given Frobenius norm (stage 3's baseline)."""
        fresh = Fastfood(self.dim, self.rank, generator=generator).to(self.diagonal.device)
        with torch.no_grad():
            fresh.diagonal.mul_(frobenius_norm / fresh.frobenius_norm())
        return fresh


class FastfoodDownLayer(nn.Module):
    """M.T @ delta + bias: the first layer of a down projection, in place of a dense Linear(D, r)."""

    def __init__(self, dim: int, rank: int, init_std: float = 0.02):
        super().__init__()
        self.matrix = Fastfood(dim, rank, init_std)
        self.bias = nn.Parameter(torch.zeros(rank))

    def forward(self, delta: torch.Tensor) -> torch.Tensor:
        return self.matrix.transposed(delta) + self.bias
