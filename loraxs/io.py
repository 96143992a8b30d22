"""Adapter folders: ``loraxs_config.json`` + ``loraxs_adapter.safetensors`` (own names, see ``adapter_files``),
written atomically.

Our format (``save_adapter``):

- full: ``<module>.lora_A``, ``<module>.lora_B`` (and ``<module>.lora_R`` for the B R A family), plus every
  trainable parameter of the head under its own name (for ``full``: every trainable parameter).
- compact (``loraxs`` and ``loraxs_random`` only): one tensor ``lora_R`` of shape ``(n_modules, r, r)`` plus
  the head. A and B are rebuilt on load (SVD of the base weights, or the seeded random init), so the config
  records a fingerprint of the target base weights; loading onto other weights is refused.

``export_peft_lora`` writes a standard PEFT LoRA folder (``adapter_config.json`` + ``adapter_model.safetensors``): ``lora_A = A``, ``lora_B = s·B R`` (or ``s·B``)
with ``lora_alpha = r`` (scale 1), so PEFT, transformers and vLLM can load any of our adapters.

Every file is written under a temporary name and renamed into place; the tensor file is written first and
its SHA-256 is recorded in the config, so a half-replaced folder is detected on load.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .adapter_files import (
    CONFIG_NAME,
    FORMAT,
    PEFT_CONFIG_NAME,
    PEFT_WEIGHTS_NAME,
    VERSION,
    WEIGHTS_NAME,
    _sha256_file,
    adapter_paths,
    check_adapter,
)
from .config import AdapterConfig
from .init import init_xs_random, init_xs_svd
from .inject import CONFIG_ATTR, adapter_layers, get_config, head_module_names, inject_adapters

COMPACT_METHODS = ("loraxs", "loraxs_random")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Any) -> None:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path`` (the project's one atomic write).

    The file gets the user's normal permissions (``0o666 & ~umask``), not ``mkstemp``'s 0600.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (a temporary file in the same folder, then a rename)."""
    path = Path(path)

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)

    atomic_write(path, write)


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    path = Path(path)

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2, sort_keys=False)
            f.write("\n")

    atomic_write(path, write)


FINGERPRINT_ATTR = "_loraxs_base_fingerprint"


def base_fingerprint(model: nn.Module) -> str:
    """SHA-256 over the names and float32 bytes of every adapter layer's base weight ``W (d_out, d_in)``.

    Computed once per model and kept on it, keyed by each weight's identity and in-place version counter
    (``Tensor._version``): saving ``adapter_best`` every epoch, the final adapter and reloading it cost one pass
    over the base weights per run (a minute on a 7B model), and any in-place change of a weight (merging, a
    user's edit) makes the next call hash again.
    """
    layers = adapter_layers(model)
    key = tuple((name, id(layer.weight), layer.weight._version) for name, layer in layers.items())
    cached = getattr(model, FINGERPRINT_ATTR, None)
    if cached is not None and cached[0] == key:
        return cached[1]
    h = hashlib.sha256()
    for name, layer in layers.items():
        if layer.merged:
            raise ValueError(f"{name} is merged; call unmerge_adapters(model) before fingerprinting or saving")
        h.update(name.encode())
        h.update(layer.weight.detach().float().contiguous().cpu().numpy().tobytes())
    digest = h.hexdigest()
    object.__setattr__(model, FINGERPRINT_ATTR, (key, digest))
    return digest


def _names_digest(names: list[str]) -> str:
    return hashlib.sha256("\n".join(names).encode()).hexdigest()


def _head_params(model: nn.Module, cfg: AdapterConfig) -> dict[str, torch.Tensor]:
    if cfg.method == "full":
        return {n: p for n, p in model.named_parameters() if p.requires_grad}
    heads = head_module_names(model, cfg.modules_to_save)
    out = {}
    for h in heads:
        for n, p in model.get_submodule(h).named_parameters():
            out[f"{h}.{n}"] = p
    return out


def save_adapter(model: nn.Module, directory: str | os.PathLike, compact: bool = False, **metadata: Any) -> Path:
    """Write the adapter (and the trainable head) of ``model`` to ``directory``; returns the folder.

    ``compact=True`` (LoRA-XS only) stores R and the head, not A and B. Extra keyword arguments are
    recorded in the config under ``metadata`` (e.g. ``base_model="roberta-large"``).
    """
    cfg = get_config(model)
    if compact and cfg.method not in COMPACT_METHODS:
        raise ValueError(
            f"compact=True is for {', '.join(COMPACT_METHODS)} (A, B rebuilt from W or a seed); "
            f"{cfg.method} must be saved with compact=False"
        )
    layers = adapter_layers(model)
    names = list(layers)
    tensors: dict[str, torch.Tensor] = {}
    if compact:
        tensors["lora_R"] = torch.stack([layers[n].lora_R.detach() for n in names])
    else:
        for n, layer in layers.items():
            tensors[f"{n}.lora_A"] = layer.lora_A.detach()
            tensors[f"{n}.lora_B"] = layer.lora_B.detach()
            if cfg.is_xs:
                tensors[f"{n}.lora_R"] = layer.lora_R.detach()
    for n, p in _head_params(model, cfg).items():
        tensors[n] = p.detach()
    tensors = {k: v.contiguous().cpu() for k, v in tensors.items()}

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write(directory / WEIGHTS_NAME, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    record = {
        "format": FORMAT,
        "version": VERSION,
        "config": cfg.to_dict(),
        "compact": compact,
        "n_modules": len(names),
        "modules_sha256": _names_digest(names),
        "base_fingerprint": base_fingerprint(model) if cfg.method != "full" else None,
        "weights_sha256": _sha256_file(directory / WEIGHTS_NAME),
        "metadata": metadata,
    }
    if not compact:
        record["modules"] = names
    write_json_atomic(directory / CONFIG_NAME, record)
    return directory


def _read_tensors(directory: Path, record: dict[str, Any]) -> dict[str, torch.Tensor]:
    path = adapter_paths(directory)[1]  # already checked against the config's SHA-256 by check_adapter
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as e:  # pragma: no cover - caught by the hash first
        raise ValueError(f"{path} is not a readable safetensors file ({e})") from None


@torch.no_grad()
def _copy(dst: torch.Tensor, src: torch.Tensor, key: str) -> None:
    if dst.shape != src.shape:
        raise ValueError(f"adapter tensor {key} has shape {tuple(src.shape)}, the model expects {tuple(dst.shape)}")
    dst.copy_(src.to(dst))


def load_adapter(
    model: nn.Module,
    directory: str | os.PathLike,
    progress: bool = False,
    skip_mismatched_head: bool = False,
    load_head: bool = True,
) -> nn.Module:
    """Load an adapter folder into ``model`` (injecting it first if the model has none); returns ``model``.

    A compact LoRA-XS file rebuilds A and B from the base weights (or the stored seed) and is refused
    when the base weights differ from those it was saved with. ``load_head=False`` loads the adapter only and
    leaves the head at the model's own (fresh) init, as the official MNLI → MRPC/RTE/STS-B start does.
    ``skip_mismatched_head=True`` leaves head tensors whose shape differs (another label count, e.g. MNLI → RTE)
    at their fresh init, with a warning.
    """
    directory = Path(directory)
    record = check_adapter(directory)
    cfg = AdapterConfig.from_dict(record["config"])
    tensors = _read_tensors(directory, record)

    current = getattr(model, CONFIG_ATTR, None)
    if current is None:
        inject_adapters(model, cfg, init=False)
    elif current.to_dict() != cfg.to_dict():
        raise ValueError(
            f"the model already has a different adapter ({current.method}, r={current.rank}) than {directory}"
        )
    layers = adapter_layers(model)
    names = list(layers)
    if len(names) != record["n_modules"] or _names_digest(names) != record["modules_sha256"]:
        raise ValueError(
            f"{directory} was saved for {record['n_modules']} adapter modules that differ from this model's "
            f"{len(names)}; load it onto the same architecture"
        )
    if cfg.method != "full" and record.get("base_fingerprint"):
        if base_fingerprint(model) != record["base_fingerprint"]:
            if record["compact"]:
                raise ValueError(
                    f"{directory} is a compact LoRA-XS adapter for other base weights (fingerprint differs); "
                    "it needs the exact base checkpoint and dtype it was trained on "
                    "(save with compact=False to move it)"
                )
            warnings.warn(f"{directory}: the base weights differ from those the adapter was trained on", stacklevel=2)

    if record["compact"]:
        (init_xs_svd if cfg.method == "loraxs" else init_xs_random)(
            layers, cfg, **({"progress": progress} if cfg.method == "loraxs" else {})
        )
        stacked = tensors.pop("lora_R")
        if stacked.shape[0] != len(names):
            raise ValueError(f"{directory}: lora_R holds {stacked.shape[0]} matrices for {len(names)} modules")
        for i, n in enumerate(names):
            _copy(layers[n].lora_R, stacked[i], f"lora_R[{i}]")
    else:
        for n, layer in layers.items():
            for part in ("lora_A", "lora_B") + (("lora_R",) if cfg.is_xs else ()):
                key = f"{n}.{part}"
                if key not in tensors:
                    raise ValueError(f"{directory}: tensor {key} is missing from {WEIGHTS_NAME}")
                _copy(getattr(layer, part), tensors.pop(key), key)
    params = dict(model.named_parameters())
    for key, t in tensors.items():
        if key.endswith((".lora_A", ".lora_B", ".lora_R")):
            raise ValueError(f"{directory}: tensor {key} names no adapter module of this model")
        if key not in params:
            raise ValueError(f"{directory}: head tensor {key} names no parameter of {type(model).__name__}")
        if not load_head:
            continue
        if skip_mismatched_head and params[key].shape != t.shape:
            warnings.warn(
                f"{directory}: head tensor {key} has shape {tuple(t.shape)}, the model "
                f"{tuple(params[key].shape)}; kept the model's fresh init",
                stacklevel=2,
            )
            continue
        _copy(params[key], t, key)
    return model


def export_peft_lora(
    model: nn.Module,
    directory: str | os.PathLike,
    base_model_name_or_path: str | None = None,
    task_type: str | None = None,
) -> Path:
    """Write any adapter of ``model`` (lora, loraxs, loraxs_random, lorasb) as a standard PEFT LoRA folder.

    ``lora_A (r, d_in) = A`` and ``lora_B (d_out, r) = s·B R`` (``s·B`` for LoRA), ``lora_alpha = r``, so the
    PEFT scale is 1 and ``lora_B @ lora_A`` equals our ``delta_weight()``. The head goes in
    ``modules_to_save``. ``task_type`` is PEFT's (``SEQ_CLS``, ``CAUSAL_LM``, ...).
    """
    cfg = get_config(model)
    if cfg.method == "full":
        raise ValueError("method 'full' has no adapter to export as PEFT LoRA; save the model with save_pretrained")
    layers = adapter_layers(model)
    tensors: dict[str, torch.Tensor] = {}
    fan_in_fan_out = False
    with torch.no_grad():
        for n, layer in layers.items():
            b, a = layer.lora_pair()
            dtype = layer.lora_A.dtype
            tensors[f"base_model.model.{n}.lora_A.weight"] = a.to(dtype).contiguous().cpu()
            tensors[f"base_model.model.{n}.lora_B.weight"] = b.to(dtype).contiguous().cpu()
            fan_in_fan_out |= layer.fan_in_fan_out
        for n, p in _head_params(model, cfg).items():
            tensors[f"base_model.model.{n}"] = p.detach().contiguous().cpu()
    peft_config = {
        "peft_type": "LORA",
        "task_type": task_type,
        "base_model_name_or_path": base_model_name_or_path,
        "r": cfg.rank,
        "lora_alpha": cfg.rank,
        "lora_dropout": 0.0,
        "target_modules": list(layers),
        "modules_to_save": list(cfg.modules_to_save) or None,
        "fan_in_fan_out": fan_in_fan_out,
        "bias": "none",
        "use_rslora": False,
        "use_dora": False,
        "init_lora_weights": True,
        "inference_mode": True,
    }
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write(directory / PEFT_WEIGHTS_NAME, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    write_json_atomic(directory / PEFT_CONFIG_NAME, peft_config)
    return directory
