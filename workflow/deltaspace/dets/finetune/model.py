"""Fine-tuning as a DET: the solution vector is a chosen set of the backbone's own weights, so its delta is
trained weights minus pre-trained weights (theta_init = the pre-trained values, whatever init_seed says).

`targets` picks the tensors: "all", a named set of the backbone family's profile (dets/architectures.py:
attention, ffn, norms, embeddings), or a regular expression searched in parameter names (relative to the
Hugging Face model, e.g. `encoder.layer.0.attention.self.query.weight`); a list takes the union. `layers`
keeps only tensors inside the transformer blocks with those indices (T5: encoder and decoder blocks alike).
"""
from __future__ import annotations

import re

from ..architectures import UnsupportedArchitecture, profile_for
from ..base import DeltaTuning, DetConfigError
from .config import ALL, FineTuneConfig


class FineTune(DeltaTuning):
    config = FineTuneConfig

    def attach(self, backbone) -> None:
        names = [n for n, _ in backbone.model.named_parameters()]
        chosen = self.select(backbone.model, names)
        for name, p in backbone.model.named_parameters():
            p.requires_grad_(name in chosen)

    def select(self, model, names: list[str]) -> set[str]:
        """The parameter names the options pick; every entry of `targets` must pick at least one."""
        targets, layers = self.spec["targets"], self.spec["layers"]
        targets = [targets] if isinstance(targets, str) else targets
        if not isinstance(targets, list) or not targets or not all(isinstance(t, str) and t for t in targets):
            raise DetConfigError(f"finetune: targets={self.spec['targets']!r} must be a non-empty string or list of them")
        try:
            profile = profile_for(model)
        except UnsupportedArchitecture:  # regexes and "all" still work; named sets and `layers` need a profile
            profile = None
        in_layers = self._layer_filter(profile, layers, names, model)
        unscored = profile.unscored if profile is not None else None
        chosen = set()
        for target in targets:
            pattern = self._pattern(target, profile)
            picked = {n for n in names if in_layers(n) and re.search(pattern, n)
                      and not (target == ALL and unscored and re.search(unscored, n))}
            if not picked:
                raise DetConfigError(
                    f"finetune: targets entry {target!r} (layers={layers}) picks no parameter of "
                    f"{type(model).__name__}; named sets: {self._set_names(profile)}; parameter names look like "
                    f"{names[len(names) // 2]!r}")
            chosen |= picked
        return chosen

    @staticmethod
    def _set_names(profile) -> list[str]:
        return [ALL, *sorted(profile.weight_sets)] if profile is not None else [ALL]

    def _pattern(self, target: str, profile) -> str:
        if target == ALL:
            return ""
        if profile is not None and target in profile.weight_sets:
            return profile.weight_sets[target]
        try:
            re.compile(target)
        except re.error as err:
            raise DetConfigError(f"finetune: targets entry {target!r} is neither a named set "
                                 f"{self._set_names(profile)} nor a valid regular expression ({err})") from None
        return target

    def _layer_filter(self, profile, layers, names: list[str], model):
        if layers == ALL:
            return lambda name: True
        if not isinstance(layers, list) or not layers or not all(isinstance(i, int) and i >= 0 for i in layers):
            raise DetConfigError(f"finetune: layers={layers!r} must be 'all' or a list of block indices (0, 1, ...)")
        if profile is None:
            raise DetConfigError(f"finetune: `layers` needs the block layout of {type(model).__name__}, which has no "
                                 f"profile in deltaspace/dets/architectures.py; add one or use `layers: all`")
        found = {int(m.group(1)) for n in names if (m := re.search(profile.blocks, n))}
        missing = sorted(set(layers) - found)
        if missing:
            raise DetConfigError(f"finetune: layers {missing} are not blocks of {type(model).__name__}; its blocks "
                                 f"are {sorted(found)}")
        wanted = set(layers)
        return lambda name: (m := re.search(profile.blocks, name)) is not None and int(m.group(1)) in wanted
