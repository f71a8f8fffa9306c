"""What every DET declares in its folder's config.py, torch-free so that Snakemake checks a config's `dets`
without importing torch: its options (PEFT-style dataclass fields: type, default, one line of help), the PEFT
type it exports to or why none fits, and whether the landscape may stack its points with torch.func.vmap."""
from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import ClassVar

from ..options import declared_options, option, option_defaults, summary


class DetConfigError(ValueError):
    pass


@dataclass(kw_only=True)
class DetConfig:
    """Options every DET takes besides `method`. A DET's config.py subclasses this (decorated the same way)."""

    method: ClassVar[str]  # the name configs give in `method`: the DET's folder name
    peft_type: ClassVar[str | None] = None  # the PEFT type that computes the same function (export.py), if any
    not_in_peft: ClassVar[str] = ""  # why no PEFT type does (the message of a refused export)
    # The functional forward runs under torch.func.vmap over stacked vectors (grid_eval.stacked_scores); False:
    # the landscape scores this DET one vector per forward pass.
    vmap: ClassVar[bool] = True

    lr: float | None = option(None, "this DET's stage-1 learning rate; original.lr when absent", exclusiveMinimum=0)
    expected_params: int | None = option(
        None, "the DET's parameter count on this backbone; the run stops at once if it differs", minimum=1)

    @classmethod
    def defaults(cls) -> dict:
        """Option name -> default: what a DET fills into a spec that leaves the option out."""
        return option_defaults(cls)

    @classmethod
    def allowed_keys(cls) -> set[str]:
        return {"method"} | {f.name for f in declared_options(cls)}

    @classmethod
    def describe(cls) -> str:
        """The docstring's first paragraph and how the DET exports, for the config reference."""
        export = f"PEFT export: {cls.peft_type}." if cls.peft_type else f"No PEFT export: {cls.not_in_peft}."
        landscape = "" if cls.vmap else " The landscape scores it one point per forward pass (no vmap)."
        return f"{summary(cls)} {export}{landscape}"

    @classmethod
    def model_class(cls):
        """The DeltaTuning subclass of model.py beside this config.py whose `config` is this class (imports torch)."""
        from .base import DeltaTuning

        module = import_module(cls.__module__.rpartition(".")[0] + ".model")
        found = [c for c in vars(module).values()
                 if isinstance(c, type) and issubclass(c, DeltaTuning) and vars(c).get("config") is cls]
        if len(found) != 1:
            raise DetConfigError(f"{module.__name__} must define one DeltaTuning subclass with `config = "
                                 f"{cls.__name__}`; found {[c.__name__ for c in found]}")
        return found[0]


def target_modules_option():
    """`target_modules` of the DETs that attach to named modules (adapter, lora, prefix)."""
    return option("auto", "auto (the backbone profile's choice), a module-name regex, or a list of them",
                  type=["string", "array"], minLength=1, minItems=1, items={"type": "string", "minLength": 1})
