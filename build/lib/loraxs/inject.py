"""Injecting adapters into any ``nn.Module`` (a Hugging Face model or not), in place.

Targets are matched as PEFT does: a module named ``n`` is a target when ``n == t`` or
``n.endswith("." + t)`` for some ``t`` in ``target_modules``. Modules under ``modules_to_save`` (task heads)
are never wrapped and stay fully trainable.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from .config import AdapterConfig
from .init import init_lora, init_lorasb, init_r_normal, init_xs_random, init_xs_svd
from .layers import SUPPORTED_TYPES, AdapterLayer, LoraLayer, XSLayer, layer_shape
from .lorasb import LoraSBInit

CONFIG_ATTR = "loraxs_config"


def _matches(name: str, suffixes: Iterable[str]) -> bool:
    return any(name == t or name.endswith("." + t) for t in suffixes)


def _under(name: str, prefixes: Iterable[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def head_module_names(model: nn.Module, modules_to_save: list[str]) -> list[str]:
    """Names of the modules that ``modules_to_save`` selects (outermost matches only)."""
    found: list[str] = []
    for name, _ in model.named_modules():
        if name and _matches(name, modules_to_save) and not _under(name, found):
            found.append(name)
    missing = [t for t in modules_to_save if not any(_matches(f, [t]) for f in found)]
    if missing:
        some = [n for n, _ in model.named_modules() if n and n.count(".") <= 1][:12]
        raise ValueError(
            f"modules_to_save {missing} match no module of {type(model).__name__}; "
            f"top-level modules include: {', '.join(some)} (use [] for none)"
        )
    return found


def find_targets(model: nn.Module, config: AdapterConfig) -> list[str]:
    """Names of the layers to wrap; raises ``ValueError`` on no match or an unsupported layer type."""
    heads = head_module_names(model, config.modules_to_save)
    names = []
    for name, module in model.named_modules():
        if not name or _under(name, heads) or not _matches(name, config.target_modules):
            continue
        if isinstance(module, AdapterLayer):
            raise ValueError(f"module {name!r} already holds an adapter; inject into a fresh model")
        if not isinstance(module, SUPPORTED_TYPES):
            continue  # e.g. a container whose name ends like a target; its Linear children may match
        names.append(name)
    if not names:
        linear = [n for n, m in model.named_modules() if isinstance(m, SUPPORTED_TYPES)]
        suffixes = sorted({n.split(".")[-1] for n in linear})
        raise ValueError(
            f"target_modules {config.target_modules} match no nn.Linear/Conv1D of {type(model).__name__}; "
            f"its linear layers end in: {', '.join(suffixes[:15])} (e.g. {', '.join(linear[:3])})"
        )
    for name in names:
        d_out, d_in = layer_shape(model.get_submodule(name))
        if not 1 <= config.rank <= min(d_in, d_out):
            raise ValueError(
                f"rank {config.rank} out of range for {name} of shape (d_out={d_out}, d_in={d_in}); "
                f"valid: 1..{min(d_in, d_out)}"
            )
    return names


def adapter_layers(model: nn.Module) -> dict[str, AdapterLayer]:
    """The injected adapter layers by module name, in ``named_modules`` order."""
    return {n: m for n, m in model.named_modules() if isinstance(m, AdapterLayer)}


def get_config(model: nn.Module) -> AdapterConfig:
    """The ``AdapterConfig`` a model was injected with; ``ValueError`` if it has none."""
    cfg = getattr(model, CONFIG_ATTR, None)
    if cfg is None:
        raise ValueError(f"{type(model).__name__} has no adapters; call inject_adapters(model, config) first")
    return cfg


def _wrap(model: nn.Module, names: list[str], config: AdapterConfig) -> dict[str, AdapterLayer]:
    cls = LoraLayer if config.method == "lora" else XSLayer
    layers = {}
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        layer = cls(getattr(parent, child), config.rank, config.scale, config.dropout)
        setattr(parent, child, layer)
        layers[name] = layer
    return layers


def inject_adapters(
    model: nn.Module,
    config: AdapterConfig,
    *,
    init: bool | LoraSBInit = True,
    progress: bool = False,
) -> nn.Module:
    """Wrap the targets of ``model`` in place and freeze what the method freezes; returns ``model``.

    Args:
        model: any module (Hugging Face or not).
        config: the adapter's configuration.
        init: ``True``: the method's own init (LoRA: Kaiming A, B = 0; LoRA-XS: SVD of W or the seeded random
            factors, R ~ N(0, σ²)). LoRA-SB's init needs data: pass ``init=lorasb_init(model, config, batches,
            eta)`` (or a ``LoraSBInit(gradients, eta)`` built from :func:`~loraxs.lorasb.estimate_gradients`).
            ``False`` leaves every factor at zero, for loading saved factors (``load_adapter``, resuming).
        progress: show a tqdm bar for the SVD.

    Adapter tensors are float32 whatever the base dtype, and so are the modules of ``modules_to_save`` (their
    floating inputs are cast to float32 by a forward pre-hook), as PEFT and the official code train them.
    """
    config.validate()
    if getattr(model, CONFIG_ATTR, None) is not None:
        raise ValueError(f"{type(model).__name__} already has adapters ({getattr(model, CONFIG_ATTR).method})")
    if config.method == "full":
        head_module_names(model, config.modules_to_save)  # validates the names
        for p in model.parameters():
            p.requires_grad_(True)
        setattr(model, CONFIG_ATTR, config)
        return model
    if config.method == "lorasb" and init is True:
        raise ValueError(
            "LoRA-SB's init needs data: pass init=lorasb_init(model, config, batches, eta) "
            "(eta from loraxs.effective_lr), or init=False to load saved factors"
        )
    if isinstance(init, LoraSBInit) and config.method != "lorasb":
        raise ValueError(f"a LoraSBInit is for method 'lorasb', not {config.method!r}")

    names = find_targets(model, config)
    heads = head_module_names(model, config.modules_to_save)
    for p in model.parameters():
        p.requires_grad_(False)
    layers = _wrap(model, names, config)
    if isinstance(init, LoraSBInit):
        init_lorasb(layers, init.gradients, init.eta, config)
    elif init:
        if config.method == "lora":
            init_lora(layers)
        elif config.method == "loraxs":
            init_xs_svd(layers, config, progress)
            init_r_normal(layers, config.r_init_std)
        else:
            init_xs_random(layers, config)
            init_r_normal(layers, config.r_init_std)
    for layer in layers.values():
        for p in (layer.lora_A, layer.lora_B) if config.method == "lora" else (layer.lora_R,):
            p.requires_grad_(True)
    for h in heads:
        _train_in_float32(model.get_submodule(h))
    setattr(model, CONFIG_ATTR, config)
    return model


def _cast_inputs_to_float32(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    def cast(v: Any) -> Any:
        return v.float() if torch.is_tensor(v) and v.is_floating_point() else v

    return tuple(cast(a) for a in args), {k: cast(v) for k, v in kwargs.items()}


def _train_in_float32(head: nn.Module) -> None:
    """Make a head trainable in float32 (cast from a half-precision base, inputs cast by a pre-hook)."""
    if any(p.dtype != torch.float32 for p in head.parameters()):
        head.float()
        head.register_forward_pre_hook(_cast_inputs_to_float32, with_kwargs=True)
    for p in head.parameters():
        p.requires_grad_(True)


@dataclass
class TrainableCounts:
    """Trainable parameters: ``adapter`` (as the papers count them), ``head`` (modules_to_save), ``total``."""

    adapter: int
    head: int
    total: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def count_trainable(model: nn.Module) -> TrainableCounts:
    """Count trainable parameters; the head is whatever ``modules_to_save`` selects."""
    cfg = getattr(model, CONFIG_ATTR, None)
    heads = head_module_names(model, cfg.modules_to_save) if cfg is not None else []
    head_params = {id(p) for h in heads for p in model.get_submodule(h).parameters()}
    total = head = 0
    for p in model.parameters():
        if p.requires_grad:
            total += p.numel()
            if id(p) in head_params:
                head += p.numel()
    return TrainableCounts(adapter=total - head, head=head, total=total)


def merge_adapters(model: nn.Module) -> nn.Module:
    """``W ← W + ΔW`` in every adapter layer (idempotent); the model then runs at the base model's speed."""
    for layer in adapter_layers(model).values():
        layer.merge()
    return model


def unmerge_adapters(model: nn.Module) -> nn.Module:
    """``W ← W − ΔW`` in every merged adapter layer."""
    for layer in adapter_layers(model).values():
        layer.unmerge()
    return model
