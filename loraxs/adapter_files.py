"""The adapter folder's files, checked without torch: ``loraxs_config.json`` (format, version, the tensor file's
SHA-256) and ``loraxs_adapter.safetensors``. Used by the pre-checks before any model loads.

The names are the library's own, so that a folder never looks like a PEFT folder (PEFT and transformers read any
``adapter_config.json`` as theirs and fail with ``KeyError: 'peft_type'``). A PEFT LoRA copy, which they do read,
is written by ``export_peft_lora`` (every finished run has one in ``adapter_peft/``). Folders written before the
rename (``adapter_config.json`` + ``adapter_model.safetensors`` with ``"format": "loraxs-adapter"``) still load.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

FORMAT = "loraxs-adapter"
VERSION = 1
CONFIG_NAME = "loraxs_config.json"
WEIGHTS_NAME = "loraxs_adapter.safetensors"
PEFT_CONFIG_NAME = "adapter_config.json"  # PEFT's own names: export_peft_lora writes them
PEFT_WEIGHTS_NAME = "adapter_model.safetensors"
LEGACY_NAMES = (PEFT_CONFIG_NAME, PEFT_WEIGHTS_NAME)  # this library's names before 2026-12


def is_adapter_folder(directory: str | os.PathLike) -> bool:
    """``directory`` holds an adapter of this library (current or legacy file names)."""
    d = Path(directory)
    if (d / CONFIG_NAME).is_file():
        return True
    legacy = d / LEGACY_NAMES[0]
    if not legacy.is_file():
        return False
    try:
        return json.loads(legacy.read_text()).get("format") == FORMAT
    except (json.JSONDecodeError, AttributeError, UnicodeDecodeError):
        return False


def find_adapter_folder(path: str | os.PathLike) -> Path | None:
    """The adapter folder ``path`` names: itself, or a run folder's ``adapter_best/`` (the selected adapter) or
    ``adapter/`` (the final one); ``None`` when none holds an adapter."""
    p = Path(path)
    return next((c for c in (p, p / "adapter_best", p / "adapter") if is_adapter_folder(c)), None)


def adapter_paths(directory: str | os.PathLike) -> tuple[Path, Path]:
    """``(config file, tensor file)`` of an adapter folder: the current names, or the legacy ones where only they
    exist."""
    d = Path(directory)
    if not (d / CONFIG_NAME).is_file() and (d / LEGACY_NAMES[0]).is_file():
        return d / LEGACY_NAMES[0], d / LEGACY_NAMES[1]
    return d / CONFIG_NAME, d / WEIGHTS_NAME


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_adapter_config(directory: str | os.PathLike) -> dict[str, Any]:
    """Read and check ``adapter_config.json``; ``ValueError`` names the folder and what is wrong."""
    path = adapter_paths(directory)[0]
    if not path.is_file():
        raise ValueError(f"no adapter at {directory}: {CONFIG_NAME} is missing (expected a folder from save_adapter)")
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}); the adapter folder is corrupt") from None
    if not isinstance(record, dict):
        raise ValueError(f"{path} holds a JSON {type(record).__name__}, not an adapter config object")
    if record.get("format") != FORMAT:
        hint = " (a PEFT folder: load it with peft.PeftModel)" if "peft_type" in record else ""
        raise ValueError(f"{path} is not a {FORMAT} config{hint}")
    if record.get("version") != VERSION:
        raise ValueError(f"{path}: unsupported format version {record.get('version')!r}; this library reads {VERSION}")
    return record


def check_adapter(directory: str | os.PathLike) -> dict[str, Any]:
    """Check an adapter folder without a model (its config, and the tensor file against the recorded SHA-256);
    returns the config record. ``ValueError`` names the file and what is wrong."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"no adapter at {directory}: not a folder (expected a folder from save_adapter)")
    record = read_adapter_config(directory)
    path = adapter_paths(directory)[1]
    if not path.is_file():
        raise ValueError(f"no adapter weights at {path}")
    if _sha256_file(path) != record.get("weights_sha256"):
        raise ValueError(
            f"{path} does not match {adapter_paths(directory)[0].name} (SHA-256 differs): the file is truncated, corrupt or from "
            "another save"
        )
    return record
