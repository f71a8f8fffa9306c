"""Export a DET solution as a standard PEFT adapter folder (adapter_config.json + adapter_model.safetensors)
that `peft.PeftModel.from_pretrained(base, folder)` loads and runs as the same function as our DeltaModel.

Only DETs that PEFT implements as the same function are exported (checked by tests/test_export.py):
- lora: PEFT LoRA itself (we inject it with PEFT), so the injected LoraConfig and tensors are saved as they are.
- prompt: PEFT PROMPT_TUNING prepends its virtual-token embeddings to the input embeddings and extends the
  attention mask, as ours does (seq2seq: encoder input only, hence num_transformer_submodules=1). Our encoder
  kind embeds the answer candidates without the prompt: embed them with `peft_model.get_base_model()`, which
  prompt tuning leaves untouched (PEFT 0.21's disable_adapter() fails for prompt tuning on a bare encoder).
The others raise ExportError, for the reasons in NOT_IN_PEFT.

Torch and PEFT are imported inside the functions: the workflow reads PEFT_METHODS when it plans the jobs.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

from .io import load_tensors, save_tensors, tensor_digest, write_json

# Our method -> the PEFT type that computes the same function.
PEFT_METHODS = {"lora": "LORA", "prompt": "PROMPT_TUNING"}
NOT_IN_PEFT = {
    "adapter": "PEFT has no Houlsby bottleneck adapter (out + up(SiLU(down(out))) is not a LoRA or IA3 update)",
    "prefix": "PEFT's PREFIX_TUNING passes the prefix as past key/values: no prefix in a T5 encoder but one on "
              "cross-attention, shifted positions of the real tokens (RoPE/BERT), and it refuses BERT",
    "bitfit": "PEFT has no BitFit method, and T5/Llama have no biases to hold the delta",
    "finetune": "a delta of backbone weights is no adapter: add it to the weights and save the model instead",
}
# The PEFT task type that matches each backbone kind's model class (AutoModel, ...Seq2SeqLM, ...CausalLM).
TASK_TYPES = {"encoder": "FEATURE_EXTRACTION", "seq2seq": "SEQ_2_SEQ_LM", "causal": "CAUSAL_LM"}
ADAPTER_CONFIG_FILE = "adapter_config.json"
ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors"
PROVENANCE_FILE = "deltaspace.json"


class ExportError(ValueError):
    """A solution that cannot be exported as a PEFT adapter; the message names the DET and what is supported."""


def check_exportable(det: str, method: str) -> None:
    if method not in PEFT_METHODS:
        reason = NOT_IN_PEFT.get(method, "no PEFT method computes the same function")
        raise ExportError(f"DET {det!r} (method {method!r}) cannot be exported as a PEFT adapter: {reason}. "
                          f"Exportable methods: {', '.join(sorted(PEFT_METHODS))}")


def _lora_adapter(model):
    """The LoraConfig PEFT injected (the exact target modules, rank and alpha) and PEFT's own key names."""
    from peft import get_peft_model_state_dict

    config = model.backbone.model.peft_config["default"]
    state = get_peft_model_state_dict(model.backbone.model, adapter_name="default")
    return config, state


def _prompt_adapter(model):
    from peft import PromptTuningConfig

    prompt = model.det.prompt.detach()
    config = PromptTuningConfig(task_type=TASK_TYPES[model.backbone.kind], num_virtual_tokens=prompt.shape[0],
                                token_dim=prompt.shape[1], num_transformer_submodules=1)
    return config, {"prompt_embeddings": prompt}


ADAPTER_BUILDERS = {"lora": _lora_adapter, "prompt": _prompt_adapter}


def _config_json(config) -> dict:
    """PeftConfig.save_pretrained's dict, with sets sorted so the same adapter always gives the same file."""
    data = config.to_dict()
    return {k: sorted(v) if isinstance(v, set) else v for k, v in data.items()}


def save_peft_adapter(model, vector, folder: str | Path, det: str, provenance: dict) -> Path:
    """Write `vector` (the DET's full solution, theta_init + delta; loaded into `model`) as a PEFT folder."""
    from .backbones import resolve_model_path

    check_exportable(det, model.det.method)
    folder = Path(folder)
    model.load_vector(vector)
    config, state = ADAPTER_BUILDERS[model.det.method](model)
    config = copy.deepcopy(config)
    config.inference_mode = True
    config.task_type = TASK_TYPES[model.backbone.kind]
    config.base_model_name_or_path = resolve_model_path(model.backbone.name_or_path)
    # PeftModel.from_pretrained expects the keys of a wrapped model: base_model.model.<module path>.
    if model.det.method == "lora":
        state = {f"base_model.model.{k}": v for k, v in state.items()}
    save_tensors(folder / ADAPTER_WEIGHTS_FILE, state, {"format": "pt"})
    write_json(folder / ADAPTER_CONFIG_FILE, _config_json(config))
    write_json(folder / PROVENANCE_FILE, {**provenance, "det": det, "method": model.det.method,
                                          "peft_type": PEFT_METHODS[model.det.method],
                                          "backbone": model.backbone.name_or_path,
                                          "backbone_kind": model.backbone.kind,
                                          "solution_digest": tensor_digest(vector)})
    return folder


def rebuild_delta_model(backbone_spec: dict, det_spec: dict, init_seed: int, init_digest: str, source, device="cpu"):
    """The DeltaModel a saved solution was trained in; refuses one whose theta_init differs from the file's."""
    from .backbones import load_backbone
    from .dets import build_delta_model

    model = build_delta_model(load_backbone(backbone_spec, device), det_spec, init_seed)
    if tensor_digest(model.vector()) != init_digest:
        raise ExportError(f"{source}: rebuilding DET {det_spec.get('method')!r} on {backbone_spec['name_or_path']} "
                          f"with init_seed {init_seed} gives another theta_init than the one it was trained from; "
                          f"give the backbone it was trained on")
    return model


def export_stage1(delta_path: str | Path, folder: str | Path, backbone: str | None = None, device="cpu") -> Path:
    """A stage-1 solution (results/stage1/.../delta.safetensors: theta_init + delta) as a PEFT folder.

    backbone: another path to the same weights (the file names the one used in training)."""
    tensors, meta = load_tensors(delta_path)
    det, method = meta["det"], meta["method"]
    check_exportable(det, method)  # before loading any model
    backbone_spec = {"name_or_path": backbone or meta["backbone"], "kind": meta["backbone_kind"]}
    model = rebuild_delta_model(backbone_spec, json.loads(meta["det_spec"]), int(meta["init_seed"]),
                                meta["init_digest"], delta_path, device)
    vector = model.vector() + tensors["delta"].to(model.vector().device)
    return save_peft_adapter(model, vector, folder, det, {"source": str(delta_path), "space": "own",
                                                         "task": meta["task"], "seed": int(meta["seed"])})

