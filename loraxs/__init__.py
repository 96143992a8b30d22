"""loraxs: LoRA, LoRA-XS (SVD and random), LoRA-SB and full fine-tuning for any PyTorch / Hugging Face model.

Quick use::

    from loraxs import AdapterConfig, inject_adapters, count_trainable, save_adapter
    cfg = AdapterConfig(method="loraxs", rank=16, alpha=16, target_modules=["query", "value"])
    inject_adapters(model, cfg)          # in place; only R (r×r per layer) and the head train
    print(count_trainable(model))        # TrainableCounts(adapter=..., head=..., total=...)
    save_adapter(model, "out/adapter", compact=True)
"""

from .config import METHODS, SVD_BACKENDS, AdapterConfig
from .inject import (
    TrainableCounts,
    adapter_layers,
    count_trainable,
    find_targets,
    get_config,
    inject_adapters,
    merge_adapters,
    unmerge_adapters,
)
from .io import export_peft_lora, load_adapter, read_adapter_config, save_adapter
from .layers import AdapterLayer, LoraLayer, XSLayer
from .lorasb import LoraSBInit, effective_lr, estimate_gradients, lorasb_init
from .svd import truncated_svd

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
