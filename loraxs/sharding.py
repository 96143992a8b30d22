"""FSDP2 helpers shared by training and generation: which tensors are shards, and putting a model back to them.

Under FSDP2 (``fully_shard``) a parameter is a ``DTensor`` holding this process's slice of the full tensor; a
forward pass gathers each unit's full parameters and (except after the root's forward) frees them again.
"""

from __future__ import annotations

import torch
from torch import nn


def is_shard(t: torch.Tensor) -> bool:
    """Whether ``t`` is a sharded parameter (FSDP2's ``DTensor``)."""
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)


def is_sharded(model: nn.Module) -> bool:
    """Whether any parameter of ``model`` is a shard: its every forward pass is then a collective."""
    return any(is_shard(p) for p in model.parameters())


def reshard(model: nn.Module) -> None:
    """Put every FSDP2 module of ``model`` back to its sharded parameters. Forward passes without a backward
    (evaluation) leave the root module's parameters gathered, and its ``named_parameters`` are then not the
    tensors the optimizer holds; without FSDP a no-op."""
    from torch.distributed.fsdp import FSDPModule

    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()
