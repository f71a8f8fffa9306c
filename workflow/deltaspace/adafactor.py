"""Adafactor (Shazeer and Stern 2018) as transformers 5.23 has it with no relative step, no warm-up, no first moment
and no weight decay: a constant lr (the paper's configuration), or with scale_parameter the lr times each
parameter's RMS (stage 2's default: the updates stay relative to the tiny tanh-scaled down-projections).
Ours, not transformers.optimization's: importing that module pulls in the Trainer's utilities and PEFT (~3 s of
every job's start-up) for one class. tests/test_optim.py checks it step for step against transformers' Adafactor.
Its state dict has transformers' keys (step, exp_avg_sq or exp_avg_sq_row/_col), so checkpoints load either way."""
from __future__ import annotations

import math

import torch


class Adafactor(torch.optim.Optimizer):
    """Per parameter: a second-moment estimate, factored into row and column means for 2-D and larger tensors,
    an update clipped to RMS <= clip_threshold, times the constant lr."""

    def __init__(self, params, lr: float, eps: tuple[float, float] = (1e-30, 1e-3), clip_threshold: float = 1.0,
                 decay_rate: float = -0.8, scale_parameter: bool = False):
        super().__init__(params, {"lr": lr, "eps": eps, "clip_threshold": clip_threshold, "decay_rate": decay_rate,
                                  "scale_parameter": scale_parameter})

    @staticmethod
    def _rms(tensor: torch.Tensor) -> torch.Tensor:
        return tensor.norm(2) / (tensor.numel() ** 0.5)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None if closure is None else closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, group)
        return loss

    def _update(self, p: torch.Tensor, group: dict) -> None:
        grad = p.grad.float() if p.grad.dtype in (torch.float16, torch.bfloat16) else p.grad
        if grad.is_sparse:
            raise RuntimeError("Adafactor does not support sparse gradients.")
        state, shape = self.state[p], grad.shape
        factored = len(shape) >= 2
        if not state:
            state["step"] = 0
            if factored:
                state["exp_avg_sq_row"] = torch.zeros(shape[:-1]).to(grad)
                state["exp_avg_sq_col"] = torch.zeros(shape[:-2] + shape[-1:]).to(grad)
            else:
                state["exp_avg_sq"] = torch.zeros_like(grad)
        for key in ("exp_avg_sq_row", "exp_avg_sq_col", "exp_avg_sq"):
            if key in state:
                state[key] = state[key].to(grad)
        state["step"] += 1
        beta2t = 1.0 - math.pow(state["step"], group["decay_rate"])
        update = (grad**2) + group["eps"][0]
        if factored:
            row, col = state["exp_avg_sq_row"], state["exp_avg_sq_col"]
            row.mul_(beta2t).add_(update.mean(dim=-1), alpha=(1.0 - beta2t))
            col.mul_(beta2t).add_(update.mean(dim=-2), alpha=(1.0 - beta2t))
            r_factor = (row / row.mean(dim=-1, keepdim=True)).rsqrt_().unsqueeze(-1)
            update = torch.mul(r_factor, col.unsqueeze(-2).rsqrt()).mul_(grad)
        else:
            exp_avg_sq = state["exp_avg_sq"]
            exp_avg_sq.mul_(beta2t).add_(update, alpha=(1.0 - beta2t))
            update = exp_avg_sq.rsqrt().mul_(grad)
        update.div_((self._rms(update) / group["clip_threshold"]).clamp_(min=1.0))
        target = p.float() if p.dtype in (torch.float16, torch.bfloat16) else p
        lr = group["lr"]
        if group.get("scale_parameter", False):  # transformers' order of operations, for bit-identical updates
            state["RMS"] = self._rms(target)
            lr = max(group["eps"][1], state["RMS"]) * lr
        update.mul_(lr)
        target.add_(-update)
        if target is not p:
            p.copy_(target)
