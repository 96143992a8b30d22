"""Evaluate a finished run's adapter, or a base model, on GLUE, GSM8K/MATH or the commonsense benchmarks.

    python experiments/eval.py run=outputs/runs/<run folder>                      # its model, task and adapter
    python experiments/eval.py run=<run> task.max_eval_samples=50 task.eval_batch_size=8
    python experiments/eval.py model=smollm2_135m task=metamath task.max_eval_samples=50 \\
        task.eval_sets.gsm8k.path=../shared/data/gsm8k/test.jsonl 'task.eval_sets={gsm8k: ${task.eval_sets.gsm8k}}'
    python experiments/eval.py run=<run> backend=vllm                              # needs vllm (GPU)

Special keys: ``run=<folder>`` (use its config.yaml and adapter), ``adapter_dir=<folder>`` (any adapter folder
of this library), ``backend=hf|vllm``, ``out=<folder>`` (default ``<run>/eval_<time>`` or
``outputs/evals/<model>_<task>_<time>``). Every other argument is a Hydra-style override. Writes
``metrics.json`` and ``predictions/<benchmark>.jsonl`` and prints the metrics.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("LORAXS_ROOT", str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
SPECIAL = ("run", "adapter_dir", "backend", "out")


def fail(message: str, code: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def parse(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    special, overrides = {}, []
    for a in argv:
        key = a.split("=", 1)[0]
        if key in SPECIAL and "=" in a:
            special[key] = a.split("=", 1)[1]
        else:
            overrides.append(a)
    if special.get("backend", "hf") not in ("hf", "vllm"):
        fail(f"backend={special['backend']} is unknown; valid: hf, vllm")
    return special, overrides


def compose_config(special: dict[str, str], overrides: list[str]):
    from omegaconf import OmegaConf

    if "run" in special:
        cfg_file = Path(special["run"]) / "config.yaml"
        if not cfg_file.is_file():
            fail(f"run={special['run']} has no config.yaml; give a run folder from experiments/train.py")
        cfg = OmegaConf.merge(OmegaConf.load(cfg_file), OmegaConf.from_dotlist(overrides))
        return cfg
    sys.path.insert(0, str(ROOT / "experiments"))
    from train import check_group_overrides

    check_group_overrides(overrides)
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        return compose("train", overrides=overrides)


def adapter_folder(special: dict[str, str]) -> Path | None:
    if "adapter_dir" in special:
        return Path(special["adapter_dir"])
    if "run" in special:
        for name in ("adapter_best", "adapter"):
            if (Path(special["run"]) / name / "adapter_config.json").is_file():
                return Path(special["run"]) / name
    return None


def main() -> None:
    special, overrides = parse(sys.argv[1:])
    cfg = compose_config(special, overrides)
    from loraxs.training import ConfigError, validate

    try:
        validate(cfg)
    except ConfigError as e:
        fail(str(e))
    import torch
    from accelerate import Accelerator
    from transformers.utils import logging as hf_logging

    from loraxs import export_peft_lora, load_adapter, merge_adapters
    from loraxs.io import write_json_atomic
    from loraxs.models import causal_lm_path, load_causal_lm, load_classifier, load_tokenizer
    from loraxs.tasks import build_task

    hf_logging.set_verbosity_error()
    adapter = adapter_folder(special)
    family = cfg.task.family
    if family == "glue":
        path = cfg.model.name_or_path
        tokenizer = load_tokenizer(path)
        model = load_classifier(path, int(cfg.task.num_labels), cfg.model.dtype)
    else:
        path = causal_lm_path(cfg.model, cfg.paths.cache_dir)
        tokenizer = load_tokenizer(path)
        model = load_causal_lm(path, cfg.model.dtype)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    model.to(accelerator.device).eval()
    generate_fn = None
    if adapter is not None:
        load_adapter(model, adapter)
        if special.get("backend") == "vllm":
            from loraxs.tasks.vllm_backend import vllm_generator

            peft_dir = export_peft_lora(model, Path(adapter).parent / "adapter_peft", task_type="CAUSAL_LM")
            generate_fn = vllm_generator(path, peft_dir, max_lora_rank=int(model.loraxs_config.rank))
        else:
            merge_adapters(model)  # the merged model runs at the base model's speed
    elif special.get("backend") == "vllm":
        from loraxs.tasks.vllm_backend import vllm_generator

        generate_fn = vllm_generator(path, None)
    task = build_task(cfg.task, tokenizer, train=False)
    batch = int(cfg.task.get("eval_batch_size") or cfg.trainer.eval_batch_size)
    start = time.perf_counter()
    kw = {"generate_fn": generate_fn} if generate_fn is not None else {}
    metrics, records = task.evaluate(model, accelerator, batch, True, **kw)
    seconds = time.perf_counter() - start
    if "out" in special:
        out = Path(special["out"])
    elif "run" in special:
        out = Path(special["run"]) / f"eval_{time.strftime('%Y%m%d-%H%M%S')}"
    else:
        out = (
            Path(cfg.paths.output_dir) / "evals" / f"{cfg.model.name}_{cfg.task.name}_{time.strftime('%Y%m%d-%H%M%S')}"
        )
    if accelerator.is_main_process:
        (out / "predictions").mkdir(parents=True, exist_ok=True)
        for name, rows in records.items():
            (out / "predictions" / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        n = sum(len(r) for r in records.values())
        write_json_atomic(
            out / "metrics.json",
            {
                "model": cfg.model.name,
                "task": cfg.task.name,
                "adapter": str(adapter) if adapter else None,
                "backend": special.get("backend", "hf"),
                "batch_size": batch,
                "examples": n,
                "seconds": round(seconds, 2),
                "examples_per_s": round(n / seconds, 3),
                **metrics,
            },
        )
        print(json.dumps(metrics, indent=2))
        print(f"{n} examples in {seconds:.1f} s ({n / seconds:.2f}/s); written to {out}")


if __name__ == "__main__":
    main()
