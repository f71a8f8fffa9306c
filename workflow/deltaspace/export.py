"""Export a DET solution as a standard PEFT adapter folder (adapter_config.json + adapter_model.safetensors)
that `peft.PeftModel.from_pretrained(base, folder)` loads and runs as the same function as our DeltaModel.

Only DETs that PEFT implements as the same function are exported (checked by tests/test_export.py). Each DET
declares it in its config.py (dets/<method>/config.py): `peft_type`, or `not_in_peft` with the reason; a DET with
a peft_type builds its adapter in `peft_adapter` (its model.py). The others raise ExportError.

Torch and PEFT are imported inside the functions: the workflow reads PEFT_METHODS when it plans the jobs.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

from .dets import METHODS
from .io import load_tensors, save_tensors, tensor_digest, write_json
from .paths import PeftAdapter

# Our method -> the PEFT type that computes the same function, as each DET declares it.
PEFT_METHODS = {method: config.peft_type for method, config in METHODS.items() if config.peft_type}
# The PEFT task type that matches each backbone kind's model class (AutoModel, ...Seq2SeqLM, ...CausalLM).
TASK_TYPES = {"encoder": "FEATURE_EXTRACTION", "seq2seq": "SEQ_2_SEQ_LM", "causal": "CAUSAL_LM"}


class ExportError(ValueError):
    """A solution that cannot be exported as a PEFT adapter; the message names the DET and what is supported."""


def check_exportable(det: str, method: str) -> None:
    if method not in PEFT_METHODS:
        reason = getattr(METHODS.get(method), "not_in_peft", "") or "no PEFT method computes the same function"
        raise ExportError(f"DET {det!r} (method {method!r}) cannot be exported as a PEFT adapter: {reason}. "
                          f"Exportable methods: {', '.join(sorted(PEFT_METHODS))}")


def _config_json(config) -> dict:
    """PeftConfig.save_pretrained's dict, with sets sorted so the same adapter always gives the same file."""
    data = config.to_dict()
    return {k: sorted(v) if isinstance(v, set) else v for k, v in data.items()}


def save_peft_adapter(model, vector, out, det: str, provenance: dict) -> Path:
    """Write `vector` (the DET's full solution, theta_init + delta; loaded into `model`) as a PEFT folder."""
    from .backbones import resolve_model_path

    check_exportable(det, model.det.method)
    files = PeftAdapter.of(out)  # PEFT loads a folder: the files must share one
    folder = Path(files.config).parent
    if any(Path(path).parent != folder for path in files.paths()):
        raise ExportError(f"a PEFT adapter's files must share one folder, got {files}")
    model.load_vector(vector)
    config, state = model.det.peft_adapter(model.backbone)
    config = copy.deepcopy(config)
    config.inference_mode = True
    config.task_type = TASK_TYPES[model.backbone.kind]
    config.base_model_name_or_path = resolve_model_path(model.backbone.name_or_path)
    save_tensors(files.weights, state, {"format": "pt"})
    write_json(files.config, _config_json(config))
    write_json(files.provenance, {**provenance, "det": det, "method": model.det.method,
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


def export_original(delta_path: str | Path, out, backbone: str | None = None, device="cpu",
                    threads: int | None = None) -> Path:
    """A stage-1 solution (an OriginalRun delta file: theta_init + delta) as a PEFT adapter (the PeftAdapter files
    `out`, or into that folder).

    backbone: another path to the same weights (the file names the one used in training)."""
    from .hardware import configure_threads

    configure_threads(threads)
    tensors, meta = load_tensors(delta_path)
    det, method = meta["det"], meta["method"]
    check_exportable(det, method)  # before loading any model
    backbone_spec = {"name_or_path": backbone or meta["backbone"], "kind": meta["backbone_kind"]}
    model = rebuild_delta_model(backbone_spec, json.loads(meta["det_spec"]), int(meta["init_seed"]),
                                meta["init_digest"], delta_path, device)
    vector = model.vector() + tensors["delta"].to(model.vector().device)
    return save_peft_adapter(model, vector, out, det, {"source": str(delta_path), "space": "own",
                                                         "task": meta["task"], "seed": int(meta["seed"])})

