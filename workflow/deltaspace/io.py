"""Atomic file output: write to a temporary name beside the target, then rename, so no later stage ever
trusts a half-written file."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from pathlib import Path



@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yields a temporary path in the target's folder; renamed onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A fresh unique name (not mkstemp) so the file gets the usual umask permissions.
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp"
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: str | Path, data) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_csv(path: str | Path, table, float_format: str | None = None) -> None:
    """A pandas table as CSV, atomically."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format=float_format)


def read_json(path: str | Path, what: str = "file"):
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} {path} does not exist; run the stage that writes it first")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{what} {path} is not valid JSON ({err}); delete it and rerun its stage") from err


# torch and safetensors are imported inside the functions: the data stage and snakemake's config check
# import this module and should not pay for torch.
def save_tensors(path: str | Path, tensors: dict, metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp),
                  metadata={k: str(v) for k, v in metadata.items()})


def load_tensors(path: str | Path) -> tuple[dict, dict[str, str]]:
    from safetensors.torch import load_file, safe_open

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"tensor file {path} does not exist; run the stage that writes it first")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        return load_file(str(path)), metadata
    except Exception as err:  # safetensors raises its own error types for truncated files
        raise ValueError(f"tensor file {path} is unreadable ({err}); delete it and rerun its stage") from err


def save_checkpoint(path: str | Path, state: dict) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path, digest: str, log, stage: str) -> dict | None:
    """A job's saved state, if the file is readable and was written for these settings (`digest`); else None,
    logged: an unreadable or foreign checkpoint costs a restart, never a crash and never a wrong result."""
    import torch

    path = Path(path)
    if not path.exists():
        return None
    try:
        state = torch.load(path, weights_only=True)
    except Exception as err:  # truncated, corrupt or not a torch file at all
        log(f"[{stage}] ignoring unreadable checkpoint {path}: {err}")
        return None
    if not isinstance(state, dict) or state.get("digest") != digest:
        log(f"[{stage}] ignoring checkpoint {path}: written for other settings")
        return None
    return state


def tensor_digest(t) -> str:
    return hashlib.sha256(t.detach().float().contiguous().cpu().numpy().tobytes()).hexdigest()[:16]


def config_digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]
