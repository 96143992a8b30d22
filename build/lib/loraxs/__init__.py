"""loraxs: LoRA, LoRA-XS (SVD and random), LoRA-SB and full fine-tuning for any PyTorch / Hugging Face model.

Quick use::

    from loraxs import AdapterConfig, inject_adapters, count_trainable, save_adapter
    cfg = AdapterConfig(method="loraxs", rank=16, alpha=16, target_modules=["query", "value"])
    inject_adapters(model, cfg)          # in place; only R (r×r per layer) and the head train
    print(count_trainable(model))        # TrainableCounts(adapter=..., head=..., total=...)
    save_adapter(model, "out/adapter", compact=True)
"""

from importlib import import_module
from typing import Any

from .config import METHODS, SVD_BACKENDS, AdapterConfig

# everything else imports torch: loaded on first use (PEP 562), so that reading a config stays light
_LAZY = {
    "TrainableCounts": "inject",
    "adapter_layers": "inject",
    "count_trainable": "inject",
    "find_targets": "inject",
    "get_config": "inject",
    "inject_adapters": "inject",
    "merge_adapters": "inject",
    "unmerge_adapters": "inject",
    "export_peft_lora": "io",
    "load_adapter": "io",
    "read_adapter_config": "io",
    "save_adapter": "io",
    "AdapterLayer": "layers",
    "LoraLayer": "layers",
    "XSLayer": "layers",
    "LoraSBInit": "lorasb",
    "effective_lr": "lorasb",
    "estimate_gradients": "lorasb",
    "lorasb_init": "lorasb",
    "truncated_svd": "svd",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    "METHODS",
    "SVD_BACKENDS",
    "AdapterConfig",
    "AdapterLayer",
    "LoraLayer",
    "LoraSBInit",
    "TrainableCounts",
    "XSLayer",
    "adapter_layers",
    "count_trainable",
    "effective_lr",
    "estimate_gradients",
    "export_peft_lora",
    "find_targets",
    "get_config",
    "inject_adapters",
    "load_adapter",
    "lorasb_init",
    "merge_adapters",
    "read_adapter_config",
    "save_adapter",
    "truncated_svd",
    "unmerge_adapters",
]
