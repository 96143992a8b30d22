"""The training loop: compose → load → inject → train with Accelerate → evaluate every epoch → save.

Reads top to bottom. One process or many (``accelerate launch``), CPU or GPU. The scheduler is stepped once
per optimizer step (it is not handed to ``accelerator.prepare``, which would step it once per process).
Data order and dropout are seeded from (seed, epoch), which makes resuming after an epoch exact.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Sampler
from tqdm.auto import tqdm

from .. import count_trainable, inject_adapters, load_adapter, save_adapter
from ..inject import get_config, head_module_names
from ..models import causal_lm_path, load_causal_lm, load_classifier, load_tokenizer
from ..tasks import build_task
from . import checkpoint, run_folder
from .errors import TrainingError
from .run_folder import LOG
from .settings import learning_rates, validate
from .tracker import Tracker

SCHEDULER_NAMES = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}


class EpochSampler(Sampler[int]):
    """A permutation of ``range(n)`` seeded by ``(seed, epoch)``.

    Call ``set_epoch`` on the loader Accelerate prepared: it forwards the epoch here, and otherwise sets its own
    iteration counter (which restarts at 0 in a resumed run).
    """

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


def _seed_everything(seed: int) -> None:
    from accelerate.utils import set_seed

    set_seed(seed)


def _mixed_precision(cfg: Any) -> str:
    mp = cfg.trainer.mixed_precision
    if mp == "auto":
        return "bf16" if torch.cuda.is_available() and not cfg.trainer.cpu else "no"
    return mp


def _resolve_init_from(path: str) -> Path:
    p = Path(path)
    for candidate in (p, p / "adapter_best", p / "adapter"):
        if (candidate / "adapter_config.json").is_file():
            return candidate
    raise TrainingError(
        f"init_from={path} holds no adapter (looked for adapter_config.json in it, adapter_best/, adapter/)"
    )


def _param_groups(model: torch.nn.Module, cfg: Any, lr: float, head_lr: float) -> list[dict[str, Any]]:
    heads = head_module_names(model, list(cfg.adapter.get("modules_to_save") or []))
    head_ids = {id(p) for h in heads for p in model.get_submodule(h).parameters()}
    body = [p for p in model.parameters() if p.requires_grad and id(p) not in head_ids]
    head = [p for p in model.parameters() if p.requires_grad and id(p) in head_ids]
    wd = float(cfg.trainer.weight_decay)
    groups = [{"params": body, "lr": lr, "weight_decay": wd, "name": "adapter"}]
    if head:
        groups.append({"params": head, "lr": head_lr, "weight_decay": wd, "name": "head"})
    return groups


def _better(a: float, b: float | None) -> bool:
    return b is None or a > b


def run(cfg: Any) -> dict[str, Any]:
    """Train and evaluate one run; returns the metrics written to ``metrics.json``."""
    from accelerate import Accelerator
    from transformers import get_scheduler

    adapter_cfg = validate(cfg)
    t0 = time.time()
    if cfg.trainer.get("threads"):
        torch.set_num_threads(int(cfg.trainer.threads))
    # Without CUDA, Accelerate joins a torchrun process group (MULTI_CPU, gloo) only in CPU mode.
    multi_cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    accelerator = Accelerator(
        mixed_precision=_mixed_precision(cfg),
        gradient_accumulation_steps=int(cfg.trainer.grad_accum),
        cpu=bool(cfg.trainer.cpu) or multi_cpu,
    )
    main = accelerator.is_main_process
    rank_tag = f"r{cfg.rank}" if cfg.adapter.method != "full" else "full"
    name = cfg.get("run_name") or f"{cfg.task.name}_{cfg.adapter.method}_{rank_tag}"
    run_dir = run_folder.shared(accelerator, Path(cfg.paths.output_dir), name, cfg.get("resume"))
    run_folder.setup_logging(run_dir, main)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    if main and cfg.get("resume") is None:
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(resolved))
    LOG.info("run folder: %s", run_dir)
    tracker = Tracker(cfg, resolved, run_dir, main)
    try:
        return _train(cfg, adapter_cfg, accelerator, run_dir, tracker, t0, get_scheduler)
    finally:
        tracker.finish()
        run_folder.close_logging()
        accelerator.end_training()
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=False)


def _train(cfg, adapter_cfg, accelerator, run_dir, tracker, t0, get_scheduler) -> dict[str, Any]:
    main = accelerator.is_main_process
    seed = int(cfg.seed)
    _seed_everything(seed)

    # ---- model, tokenizer, data
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the load report only says that the new head is freshly initialised
    if cfg.task.family == "glue":
        tokenizer = load_tokenizer(cfg.model.name_or_path)
        model = load_classifier(cfg.model.name_or_path, int(cfg.task.num_labels), cfg.model.dtype)
    else:
        with accelerator.main_process_first():  # a GGUF model is converted once, by the main process
            path = causal_lm_path(cfg.model, cfg.paths.cache_dir)
        tokenizer = load_tokenizer(path)
        model = load_causal_lm(path, cfg.model.dtype)
    hf_logging.disable_progress_bar()
    if model.config.pad_token_id is None and tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    task = build_task(cfg.task, tokenizer)
    LOG.info(
        "task %s: %d training examples, eval %s",
        cfg.task.name,
        len(task.train),
        {k: len(v) for k, v in task.evals.items()},
    )
    sampler = EpochSampler(len(task.train), seed)
    train_loader = DataLoader(
        task.train,
        batch_size=int(cfg.task.batch_size),
        sampler=sampler,
        collate_fn=task.collate,
        num_workers=int(cfg.trainer.num_workers),
    )
    batches_per_process = math.ceil(len(train_loader) / accelerator.num_processes)
    steps_per_epoch = math.ceil(batches_per_process / int(cfg.trainer.grad_accum))
    total_steps = steps_per_epoch * int(cfg.task.epochs)
    if cfg.trainer.get("max_steps"):
        total_steps = min(total_steps, int(cfg.trainer.max_steps))
    lr, head_lr = learning_rates(cfg)

    # ---- adapter
    model.to(accelerator.device)
    if cfg.get("init_from"):
        source = _resolve_init_from(cfg.init_from)
        load_adapter(model, source, skip_mismatched_head=True)
        saved = get_config(model)
        if (saved.method, saved.rank) != (adapter_cfg.method, adapter_cfg.rank):
            raise TrainingError(
                f"init_from={source} is {saved.method} r={saved.rank}, this run asks for "
                f"{adapter_cfg.method} r={adapter_cfg.rank}"
            )
        LOG.info("initialised adapter and head from %s", source)
    else:
        extra: dict[str, Any] = {}
        if adapter_cfg.method == "lorasb":
            sampler.set_epoch(1)  # the first samples of the first epoch, as the official code

            def loss_fn(m, batch):
                with accelerator.autocast():
                    return m(**batch).loss

            extra = dict(
                batches=iter(train_loader),
                loss_fn=loss_fn,
                lr=lr,
                warmup_ratio=float(cfg.task.warmup_ratio),
                total_steps=total_steps,
            )
        inject_adapters(model, adapter_cfg, progress=main and cfg.trainer.progress, **extra)
    counts = count_trainable(model)
    LOG.info(
        "trainable parameters: adapter %s, head %s, total %s",
        f"{counts.adapter:,}",
        f"{counts.head:,}",
        f"{counts.total:,}",
    )

    # ---- optimizer, schedule, Accelerate
    groups = _param_groups(model, cfg, lr, head_lr)
    optimizer = torch.optim.AdamW(groups, betas=tuple(cfg.trainer.adam_betas), eps=float(cfg.trainer.adam_eps))
    scheduler = get_scheduler(
        SCHEDULER_NAMES[cfg.task.scheduler],
        optimizer,
        num_warmup_steps=math.ceil(float(cfg.task.warmup_ratio) * total_steps),
        num_training_steps=total_steps,
    )
    model, optimizer, train_loader = accelerator.prepare(model, optimizer, train_loader)

    # ---- resume
    ckpt_path = run_dir / "checkpoints" / "last.pt"
    progress: dict[str, Any] = {
        "epoch": 0,
        "step": 0,
        "evals": [],
        "best": {},
        "best_epoch": None,
        "train_time": 0.0,
        "last_loss": None,
        "loss_windows": [],  # mean training loss of every trainer.log_every steps
        "window": [],
    }
    if cfg.get("resume"):
        progress = checkpoint.load(ckpt_path, accelerator.unwrap_model(model), optimizer, scheduler)
        LOG.info("resumed from %s after epoch %d (step %d)", ckpt_path, progress["epoch"], progress["step"])

    metrics: dict[str, Any] = {
        "task": cfg.task.name,
        "adapter": cfg.adapter.method,
        "rank": cfg.rank if cfg.adapter.method != "full" else None,
        "seed": seed,
        "run_dir": str(run_dir),
        "trainable": counts.as_dict(),
        "total_steps": total_steps,
        "main_metric": cfg.task.main_metric,
    }
    tracker.summary({"trainable/" + k: v for k, v in counts.as_dict().items()})
    step = int(progress["step"])
    main_metric = cfg.task.main_metric
    t_train = time.time() - float(progress["train_time"])

    # ---- epochs
    for epoch in range(int(progress["epoch"]) + 1, int(cfg.task.epochs) + 1):
        if step >= total_steps:
            break
        train_loader.set_epoch(epoch)  # the prepared loader passes it to EpochSampler (its own counter would not)
        _seed_everything(seed * 1000 + epoch + 7919 * accelerator.process_index)
        model.train()
        bar = tqdm(
            train_loader,
            desc=f"epoch {epoch}/{cfg.task.epochs}",
            disable=not (main and cfg.trainer.progress),
            dynamic_ncols=True,
        )
        for batch in bar:
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                if not torch.isfinite(loss.detach()).all():
                    _diverged(loss, epoch, step, ckpt_path)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    if cfg.trainer.get("max_grad_norm"):
                        accelerator.clip_grad_norm_(model.parameters(), float(cfg.trainer.max_grad_norm))
                    optimizer.step()
                    if not accelerator.optimizer_step_was_skipped:
                        scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
            if accelerator.sync_gradients:
                step += 1
                value = loss.item()
                progress["last_loss"] = value
                progress["window"].append(value)
                if len(progress["window"]) == int(cfg.trainer.log_every):
                    progress["loss_windows"].append(sum(progress["window"]) / len(progress["window"]))
                    progress["window"] = []
                lr_now = scheduler.get_last_lr()[0]
                bar.set_postfix(loss=f"{value:.4f}", lr=f"{lr_now:.2e}")
                tracker.log({"train/loss": value, "train/lr": lr_now, "train/epoch": epoch}, step)
                if step >= total_steps:
                    break
                if cfg.trainer.get("interrupt_at_step") and step == int(cfg.trainer.interrupt_at_step):
                    raise KeyboardInterrupt(f"trainer.interrupt_at_step={step}")
        bar.close()

        # ---- evaluate, keep the best epoch
        eval_batch = int(cfg.task.get("eval_batch_size") or cfg.trainer.eval_batch_size)
        values, preds = task.evaluate(model, accelerator, eval_batch, bool(cfg.trainer.progress))
        if main:
            _write_predictions(run_dir / "predictions", epoch, preds)
        record = {"epoch": epoch, "step": step, "lr": scheduler.get_last_lr()[0], **values}
        progress["evals"].append(record)
        LOG.info("epoch %d step %d: %s", epoch, step, ", ".join(f"{k} {v:.4f}" for k, v in values.items()))
        tracker.log({f"eval/{k}": v for k, v in values.items()}, step)
        for k, v in values.items():
            if _better(v, progress["best"].get(k, {}).get("value")):
                progress["best"][k] = {"value": v, "epoch": epoch}
        is_best = progress["best"].get(main_metric, {}).get("epoch") == epoch
        unwrapped = accelerator.unwrap_model(model)
        if is_best:
            progress["best_epoch"] = epoch
            if main and cfg.trainer.save_best_adapter and cfg.adapter.method != "full":
                save_adapter(unwrapped, run_dir / "adapter_best", epoch=epoch, task=cfg.task.name)
        progress["epoch"] = epoch
        progress["step"] = step
        progress["train_time"] = time.time() - t_train
        every = int(cfg.trainer.checkpoint_every or 0)
        if main and every and (epoch % every == 0 or epoch == int(cfg.task.epochs)):
            checkpoint.save(ckpt_path, unwrapped, optimizer, scheduler, progress)
        metrics.update(
            evals=progress["evals"],
            best=progress["best"],
            best_epoch=progress["best_epoch"],
            train_time_s=round(progress["train_time"], 2),
            finished=False,
        )
        tracker.write_metrics(metrics)
        accelerator.wait_for_everyone()

    # ---- final adapter and metrics
    unwrapped = accelerator.unwrap_model(model)
    if main:
        if cfg.adapter.method == "full":
            unwrapped.save_pretrained(run_dir / "model", safe_serialization=True)
            tokenizer.save_pretrained(run_dir / "model")
        else:
            save_adapter(unwrapped, run_dir / "adapter", task=cfg.task.name, base_model=str(cfg.model.name_or_path))
    metrics.update(
        evals=progress["evals"],
        best=progress["best"],
        best_epoch=progress["best_epoch"],
        train_time_s=round(progress["train_time"], 2),
        wall_time_s=round(time.time() - t0, 2),
        last_train_loss=progress["last_loss"],
        train_loss_windows=[round(v, 5) for v in progress["loss_windows"]],
        finished=True,
    )
    tracker.write_metrics(metrics)
    tracker.summary({f"best/{k}": v["value"] for k, v in progress["best"].items()})
    best = progress["best"].get(main_metric, {})
    LOG.info(
        "done in %.0f s: best %s %.4f at epoch %s; run folder %s",
        metrics["wall_time_s"],
        main_metric,
        best.get("value", float("nan")),
        best.get("epoch"),
        run_dir,
    )
    accelerator.wait_for_everyone()
    return metrics


def _write_predictions(folder: Path, epoch: int, preds: dict[str, list[dict[str, Any]]]) -> None:
    """``predictions/<split>_epoch<e>.jsonl``: one JSON object per evaluated example."""
    import json

    folder.mkdir(exist_ok=True)
    for split, rows in preds.items():
        path = folder / f"{split}_epoch{epoch}.jsonl"
        tmp = path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
        tmp.replace(path)


def _diverged(loss: torch.Tensor, epoch: int, step: int, ckpt: Path) -> None:
    last = ckpt if ckpt.is_file() else "none yet"
    raise TrainingError(
        f"loss became {loss.detach().float().item()} at epoch {epoch}, step {step + 1}; run stopped. "
        f"Last good checkpoint: {last}. Lower the learning rate (task.lr / adapter.lr) or check the data"
    )


__all__ = ["EpochSampler", "run"]
