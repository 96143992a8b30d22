"""Optional vLLM generation: the base model served with our adapter exported as a standard PEFT LoRA.

No merged copy of the model is written: ``export_peft_lora`` turns any adapter (lora, loraxs, lorasb) into
``lora_A = A``, ``lora_B = s·B R`` with scale 1, which vLLM's LoRA support loads next to the base weights.
Used by ``experiments/eval.py backend=vllm`` when ``vllm`` is installed; greedy decoding as the transformers path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path


def vllm_generator(
    base_path: str,
    peft_dir: str | Path | None,
    max_lora_rank: int = 16,
    dtype: str = "auto",
    stop: Sequence[str] = (),
) -> Callable[[Sequence[str], int], list[str]]:
    """``generate(prompts, max_new_tokens) -> texts`` backed by a vLLM engine: greedy, ending at the ``stop``
    strings (not kept in the text), as the official evaluation scripts call vLLM."""
    try:
        from vllm import LLM, SamplingParams
        from vllm.lora.request import LoRARequest
    except ImportError:
        raise RuntimeError("backend=vllm needs the vllm package (pip install vllm, on a GPU machine)") from None
    rank = max(8, 1 << (max_lora_rank - 1).bit_length())  # vLLM accepts 8, 16, 32, ... as max_lora_rank
    llm = LLM(model=base_path, enable_lora=peft_dir is not None, max_lora_rank=rank, dtype=dtype)
    request = LoRARequest("adapter", 1, str(peft_dir)) if peft_dir is not None else None

    def generate(prompts: Sequence[str], max_new_tokens: int) -> list[str]:
        params = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=max_new_tokens, stop=list(stop) or None)
        outs = llm.generate(list(prompts), params, lora_request=request)
        return [o.outputs[0].text for o in outs]

    return generate
