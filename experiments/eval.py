"""Evaluate a finished run's adapter, or a base model, on GLUE, GSM8K/MATH or the commonsense benchmarks.

    python experiments/eval.py run=outputs/runs/<run folder>                      # its model, task and adapter
    python experiments/eval.py run=<run> task.max_eval_samples=50 task.eval_batch_size=8
    python experiments/eval.py model=smollm2_135m task=metamath task.max_eval_samples=50 \\
        task.eval_sets.gsm8k.path=../shared/data/gsm8k/test.jsonl '~task.eval_sets.math'
    python experiments/eval.py run=<run> backend=vllm                              # needs vllm (GPU)

Special keys: ``run=<folder>`` (use its config.yaml and its selected adapter, or for full fine-tuning its saved
model: the best epoch's ``model_best/``, else the final ``model/``), ``adapter_dir=<folder>`` (any adapter folder
of this library), ``backend=hf|vllm``, ``out=<folder>`` (default ``<run>/eval_<time>`` or ``outputs/evals/<model>_<task>_<time>``). Every other argument
is a Hydra-style override, checked like ``train.py``'s: an unknown key is refused with one line (exit 2); with
``run=`` only keys of its config may change, not config groups. Writes ``metrics.json`` and
``predictions/<benchmark>.jsonl`` and prints the metrics. ``--cfg job`` prints the config it would use and stops;
``--help`` prints this text.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
os.environ.setdefault("LORAXS_ROOT", str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
SPECIAL = ("run", "adapter_dir", "backend", "out")

from train import GROUPS, check_group_overrides, fail, hydra_overrides  # noqa: E402


def parse(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """``(special keys, overrides)``."""
    special, rest = {}, []
    for a in argv:
        key = a.split("=", 1)[0]
        if key in SPECIAL and "=" in a:
            special[key] = a.split("=", 1)[1]
        else:
            rest.append(a)
    if special.get("backend", "hf") not in ("hf", "vllm"):
        fail(f"backend={special['backend']} is unknown; valid: hf, vllm")
    return special, hydra_overrides(rest)


def compose_config(special: dict[str, str], overrides: list[str]):
    """The run's saved config with the overrides merged (unknown keys refused), or a fresh composition."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    check_group_overrides(overrides)
    if "run" not in special:
        from hydra import compose, initialize_config_dir
        from hydra.errors import HydraException

        try:
            with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
                return compose("train", overrides=overrides)
        except (HydraException, OmegaConfBaseException) as e:
            fail(str(e).splitlines()[0])
    cfg_file = Path(special["run"]) / "config.yaml"
    if not cfg_file.is_file():
        fail(f"run={special['run']} has no config.yaml; give a run folder from experiments/train.py")
    groups = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") in GROUPS]
    if groups:
        fail(f"{groups[0]} changes a config group of run={special['run']}; change its keys instead")
    cfg = OmegaConf.load(cfg_file)  # resolved when the run wrote it: no interpolation is re-read
    OmegaConf.set_struct(cfg, True)
    try:
        return OmegaConf.merge(cfg, OmegaConf.from_dotlist(overrides))
    except OmegaConfBaseException as e:
        key = str(e).splitlines()[0]
        fail(f"{key} (in run={special['run']}'s config); valid keys are those of its config.yaml")


def adapter_folder(special: dict[str, str]) -> Path | None:
    from loraxs.adapter_files import find_adapter_folder

    if "adapter_dir" in special:
        return Path(special["adapter_dir"])
    if "run" in special:
        return find_adapter_folder(special["run"])
    return None


def check_out_folder(out: str) -> None:
    """``out=`` is a new or empty folder: an evaluation never overwrites another's files."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        fail(f"out={out} is a file; give a new folder")
    if (path / "metrics.json").exists():
        fail(f"out={out} already holds an evaluation (metrics.json); give a new folder")
    from loraxs.training import ConfigError
    from loraxs.training.inputs import check_writable_folder

    try:
        check_writable_folder("out", out)
    except ConfigError as e:
        fail(str(e))


def main() -> None:
    argv = sys.argv[1:]
    if any(a in ("--help", "-h") for a in argv):
        print(__doc__)
        return
    special, overrides = parse(argv)
    cfg = compose_config(special, overrides)
    if "--cfg" in argv or "-c" in argv:  # print the config this evaluation would use, and stop
        from omegaconf import OmegaConf

        print(OmegaConf.to_yaml(cfg))
        return
    from loraxs.training import ConfigError, TrainingError, validate

    try:
        spec = validate(cfg)
    except ConfigError as e:
        fail(str(e))
    run = Path(special.get("run", ""))
    saved_model = next((run / n for n in ("model_best", "model") if (run / n / "config.json").is_file()), run / "model")
    if spec.adapter.method == "full" and "run" in special:
        if not (saved_model / "config.json").is_file():
            fail(f"run={special['run']} has no saved model (model_best/ or model/); it did not finish")
        spec = dataclasses.replace(spec, model=dataclasses.replace(spec.model, name_or_path=str(saved_model)))
    adapter = adapter_folder(special) if spec.adapter.method != "full" else None
    if "run" in special and spec.adapter.method != "full" and adapter is None:
        fail(f"run={special['run']} has no adapter_best/ or adapter/ folder; it did not finish")
    if "out" in special:
        check_out_folder(special["out"])
    if adapter is not None:
        from loraxs.io import check_adapter

        try:
            check_adapter(adapter)  # before the model loads
        except ValueError as e:
            fail(str(e).splitlines()[0], 1)
    try:
        evaluate_spec(spec, special)
    except (TrainingError, FileNotFoundError, RuntimeError, ValueError) as e:
        fail(str(e).splitlines()[0], 1)


def evaluate_spec(spec, special: dict[str, str]) -> None:
    from loraxs import export_peft_lora, load_adapter, merge_adapters
    from loraxs.io import write_json_atomic, write_text_atomic
    from loraxs.tasks import build_task
    from loraxs.training.phases import evaluate, load_base, make_accelerator

    accelerator = make_accelerator(spec)
    model, tokenizer = load_base(spec, accelerator)
    model.eval()
    adapter = adapter_folder(special) if spec.adapter.method != "full" else None
    generate_fn = None
    if special.get("backend") == "vllm":
        from loraxs.models import causal_lm_path
        from loraxs.tasks.vllm_backend import vllm_generator

        peft_dir = None
        if adapter is not None:
            load_adapter(model, adapter)
            peft_dir = export_peft_lora(model, Path(adapter).parent / "adapter_peft", task_type="CAUSAL_LM")
        rank = spec.adapter.rank if adapter is not None else 8
        stop = getattr(spec.task, "stop", [])
        generate_fn = vllm_generator(causal_lm_path(spec.model, spec.paths.cache_dir), peft_dir, rank, stop=stop)
    elif adapter is not None:
        load_adapter(model, adapter)
        merge_adapters(model)  # the merged model runs at the base model's speed
    task = build_task(spec.task, tokenizer, train=False)
    start = time.perf_counter()
    metrics, records = evaluate(task, model, accelerator, spec, **({"generate_fn": generate_fn} if generate_fn else {}))
    seconds = time.perf_counter() - start
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if "out" in special:
        out = Path(special["out"])
    elif "run" in special:
        out = Path(special["run"]) / f"eval_{stamp}"
    else:
        out = Path(spec.paths.output_dir) / "evals" / f"{spec.model.name}_{spec.task.name}_{stamp}"
    if accelerator.is_main_process:
        (out / "predictions").mkdir(parents=True, exist_ok=True)
        for name, rows in records.items():
            write_text_atomic(out / "predictions" / f"{name}.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
        n = sum(len(r) for r in records.values())
        write_json_atomic(
            out / "metrics.json",
            {
                "model": spec.model.name,
                "task": spec.task.name,
                "adapter": str(adapter) if adapter else None,
                "backend": special.get("backend", "hf"),
                "batch_size": getattr(spec.task, "eval_batch_size", spec.trainer.eval_batch_size),
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
