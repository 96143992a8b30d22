"""``experiments/train.py`` under Accelerate's FSDP2 on CPU processes (torchrun, gloo), for the tests.

Accelerate turns FSDP on for GPU processes only (CPU processes are ``MULTI_CPU`` whatever the config says), while
torch's ``fully_shard`` itself runs on CPU with gloo. This wrapper makes the run's Accelerator as usual, then gives
it the FSDP2 plugin of ``scripts/accelerate/fsdp.yaml`` (its ``fsdp_config``: one shard unit per decoder layer,
FULL_SHARD, FULL_STATE_DICT, RAM-efficient loading) and marks its state FSDP before anything is prepared, so
``accelerator.prepare`` shards the model with the same code as on GPUs, and the loop takes its FSDP paths.
``ACCELERATE_USE_FSDP=true`` is set as ``accelerate launch`` sets it (transformers then loads the weights on
process 0 only, and ``prepare`` broadcasts them).

    python -m torch.distributed.run --nproc_per_node 2 tests/fsdp_cpu_train.py <train.py overrides>
"""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loraxs.training import loop, phases  # noqa: E402


def fsdp_plugin() -> Any:
    """The FSDP plugin of scripts/accelerate/fsdp.yaml (the settings ``accelerate launch`` would pass on)."""
    import yaml
    from accelerate import FullyShardedDataParallelPlugin

    cfg = yaml.safe_load((ROOT / "scripts" / "accelerate" / "fsdp.yaml").read_text())["fsdp_config"]
    return FullyShardedDataParallelPlugin(
        fsdp_version=cfg["fsdp_version"],
        auto_wrap_policy=cfg["fsdp_auto_wrap_policy"].lower(),
        transformer_cls_names_to_wrap=[cfg["fsdp_transformer_layer_cls_to_wrap"]],
        reshard_after_forward=cfg["fsdp_reshard_after_forward"],
        state_dict_type=cfg["fsdp_state_dict_type"],
        cpu_ram_efficient_loading=cfg["fsdp_cpu_ram_efficient_loading"],
        cpu_offload=cfg["fsdp_offload_params"],
        activation_checkpointing=cfg["fsdp_activation_checkpointing"],
    )


def make_fsdp_accelerator(spec: Any) -> Any:
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType

    accelerator = phases.make_accelerator(spec)
    for shared in (PartialState._shared_state, AcceleratorState._shared_state):
        shared["distributed_type"] = DistributedType.FSDP
    AcceleratorState._shared_state["fsdp_plugin"] = fsdp_plugin()
    assert accelerator.is_fsdp2, "the wrapper no longer turns FSDP2 on (Accelerate changed)"
    return accelerator


os.environ["ACCELERATE_USE_FSDP"] = "true"
loop.make_accelerator = make_fsdp_accelerator
sys.argv = [str(ROOT / "experiments" / "train.py"), *sys.argv[1:]]
runpy.run_path(sys.argv[0], run_name="__main__")
