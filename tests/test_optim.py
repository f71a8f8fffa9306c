"""deltaspace's own Adafactor (adafactor.py) against transformers' (the reference it replaces for import cost):
the same parameter updates, step for step, on 1-D and 2-D (and 3-D) tensors, and checkpoints that load either way."""
from __future__ import annotations

import copy

import pytest
import torch
from transformers.optimization import Adafactor as Reference

from deltaspace.optim import make_optimizer

SHAPES = [(7,), (16,), (5, 3), (12, 8), (2, 4, 6)]


def _trajectories(steps: int, lr: float, dtype=torch.float32, scaled: bool = False):
    torch.manual_seed(0)
    starts = [torch.randn(shape).to(dtype) for shape in SHAPES]
    grads = [[torch.randn(shape).to(dtype) * 10 ** (k % 3 - 1) for shape in SHAPES] for k in range(steps)]
    ours = [s.clone().requires_grad_(True) for s in starts]
    theirs = [s.clone().requires_grad_(True) for s in starts]
    optimizers = (make_optimizer("adafactor_scaled" if scaled else "adafactor", ours, lr),
                  Reference(theirs, lr=lr, scale_parameter=scaled, relative_step=False, warmup_init=False))
    for step_grads in grads:
        for params, optimizer in zip((ours, theirs), optimizers):
            for p, g in zip(params, step_grads):
                p.grad = g.clone()
            optimizer.step()
        yield [p.detach().clone() for p in ours], [p.detach().clone() for p in theirs]


@pytest.mark.parametrize("lr", [1e-3, 0.2])
def test_adafactor_updates_equal_transformers_bit_for_bit(lr):
    for ours, theirs in _trajectories(steps=6, lr=lr):
        for a, b in zip(ours, theirs):
            assert torch.equal(a, b)


@pytest.mark.parametrize("lr", [1e-3, 0.5])
def test_scaled_adafactor_updates_equal_transformers_scale_parameter_bit_for_bit(lr):
    for ours, theirs in _trajectories(steps=6, lr=lr, scaled=True):
        for a, b in zip(ours, theirs):
            assert torch.equal(a, b)


def test_scaled_adafactor_step_is_relative_to_the_parameter_rms():
    # one step from zero second moments: update = g / |g| elementwise (RMS 1, unclipped) times lr * RMS(p)
    p = torch.tensor([3.0, -4.0], requires_grad=True)  # RMS = sqrt((9 + 16) / 2)
    p.grad = torch.tensor([2.0, -0.5])
    make_optimizer("adafactor_scaled", [p], 0.1).step()
    rms = (12.5) ** 0.5
    assert torch.allclose(p.detach(), torch.tensor([3.0 - 0.1 * rms, -4.0 + 0.1 * rms]), atol=1e-5)


def test_adafactor_bf16_parameters_equal_transformers():
    for ours, theirs in _trajectories(steps=3, lr=0.05, dtype=torch.bfloat16):
        for a, b in zip(ours, theirs):
            assert a.dtype == torch.bfloat16 and torch.equal(a, b)


def test_a_checkpoint_of_transformers_adafactor_resumes_in_ours():
    torch.manual_seed(1)
    start, grads = torch.randn(6, 4), [torch.randn(6, 4) for _ in range(4)]
    theirs, ours = start.clone().requires_grad_(True), start.clone().requires_grad_(True)
    reference = Reference([theirs], lr=0.1, scale_parameter=False, relative_step=False, warmup_init=False)
    optimizer = make_optimizer("adafactor", [ours], 0.1)
    for k, grad in enumerate(grads):
        theirs.grad = grad.clone()
        reference.step()
        if k == 1:  # resume ours from the reference's state after two steps
            with torch.no_grad():
                ours.copy_(theirs)
            optimizer.load_state_dict(copy.deepcopy(reference.state_dict()))  # as if read from a file
        elif k > 1:
            ours.grad = grad.clone()
            optimizer.step()
    assert torch.equal(ours, theirs)
