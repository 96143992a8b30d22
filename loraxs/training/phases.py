"""The phases of a run, shared by ``experiments/train.py`` (the loop) and ``experiments/eval.py``.

``check_inputs`` (cheap, before anything loads) → ``make_accelerator`` → ``load_base_tokenizer`` → ``build_task``
(the data read and checked) → ``load_base`` →
``attach_adapter`` (inject and initialise, or load) → ``make_optimizer`` → train → ``evaluate`` /
``validation_loss``. Every phase takes the typed :class:`~loraxs.training.spec.RunSpec`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Sampler

from .. import inject_adapters, load_adapter
from ..adapter_files import CONFIG_NAME, find_adapter_folder
from ..inject import get_config, head_module_names
from ..lorasb import effective_lr, lorasb_init
from ..models import causal_lm_path, load_causal_lm, load_classifier, load_encoder_head, load_tokenizer
from ..sharding import reshard
from .errors import TrainingError
from .run_folder import LOG
from .spec import RunSpec, model_head

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

    def permutation(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        return torch.randperm(self.n, generator=g).tolist()

    def __iter__(self):
        return iter(self.permutation(self.epoch))

    def __len__(self) -> int:
        return self.n


def make_accelerator(spec: RunSpec) -> Any:
    """An ``Accelerator`` for the spec's precision and accumulation (CPU processes of torchrun join via gloo)."""
    import os

    from accelerate import Accelerator

    mp = spec.trainer.mixed_precision
    if mp == "auto":
        mp = "bf16" if torch.cuda.is_available() and not spec.trainer.cpu else "no"
    multi_cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    return Accelerator(
        mixed_precision=mp,
        gradient_accumulation_steps=spec.optim.grad_accum,
        cpu=spec.trainer.cpu or multi_cpu,
    )


# ------------------------------------------------------------------ model
def base_path(spec: RunSpec, accelerator: Any) -> str:
    """Where the base model loads from: ``model.name_or_path``, or for a GGUF decoder its converted folder (made
    once, by the main process first)."""
    if model_head(spec.task) != "causal_lm":
        return spec.model.name_or_path
    with accelerator.main_process_first():
        return causal_lm_path(spec.model, spec.paths.cache_dir)


def load_base(spec: RunSpec, accelerator: Any, tokenizer: Any = None) -> tuple[nn.Module, Any]:
    """The base model (a classifier for GLUE, a causal LM otherwise) and its tokenizer, on the accelerator's device
    (``tokenizer``: one loaded already by :func:`load_base_tokenizer`, e.g. to read the data before the model)."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the load report only says that the new head is freshly initialised
    path = base_path(spec, accelerator)
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(path)
    head = model_head(spec.task)
    if head == "sequence_classification":
        model = load_classifier(path, spec.task.num_labels, spec.model.dtype)
    elif head == "causal_lm":
        model = load_causal_lm(path, spec.model.dtype)
    else:
        model = load_encoder_head(path, head, spec.model.dtype)
    hf_logging.disable_progress_bar()
    if model.config.pad_token_id is None and tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model.to(accelerator.device), tokenizer


def load_base_tokenizer(spec: RunSpec, accelerator: Any) -> Any:
    """The base model's tokenizer alone (cheap): the task's data is read and checked with it before the model
    loads."""
    return load_tokenizer(base_path(spec, accelerator))


def resolve_adapter_folder(path: str) -> Path:
    """An adapter folder: ``path`` itself, or a run folder's ``adapter_best/`` or ``adapter/``."""
    folder = find_adapter_folder(path)
    if folder is not None:
        return folder
    raise TrainingError(f"{path} holds no adapter (looked for {CONFIG_NAME} in it, adapter_best/, adapter/)")


def optimizer_steps(n_train: int, spec: RunSpec, num_processes: int) -> int:
    """Optimizer steps of the whole run: ``⌈⌈N / batch⌉ / processes / grad_accum⌉ · epochs``, capped by max_steps."""
    batches_per_process = math.ceil(math.ceil(n_train / spec.optim.batch_size) / num_processes)
    total = math.ceil(batches_per_process / spec.optim.grad_accum) * spec.optim.epochs
    return total if spec.optim.max_steps is None else min(total, spec.optim.max_steps)


def attach_adapter(
    model: nn.Module, spec: RunSpec, task: Any, accelerator: Any, total_steps: int, resuming: bool = False
) -> dict[str, Any]:
    """Inject the spec's adapter and initialise it: from ``init_from``, by LoRA-SB's data-driven step, or by the
    method's own init. ``resuming``: inject only; the factors come from the checkpoint (no SVD, no estimate).
    Returns what the init used (recorded in ``metrics.json``): the source folder, or LoRA-SB's η_eff and samples."""
    cfg = spec.adapter
    progress = accelerator.is_main_process and spec.trainer.progress
    if resuming:
        inject_adapters(model, cfg, init=False)
        LOG.info("adapter injected without init: its factors come from the checkpoint")
        return {}
    if spec.init_from:
        source = resolve_adapter_folder(spec.init_from)
        load_adapter(model, source, load_head=spec.init_from_head, skip_mismatched_head=True, progress=progress)
        saved = get_config(model)
        fields = ("method", "rank", "alpha", "target_modules")
        if any(getattr(saved, f) != getattr(cfg, f) for f in fields):
            ours = ", ".join(f"{f}={getattr(cfg, f)}" for f in fields)
            theirs = ", ".join(f"{f}={getattr(saved, f)}" for f in fields)
            raise TrainingError(f"init_from={source} holds an adapter with {theirs}; this run asks for {ours}")
        LOG.info("initialised the adapter%s from %s", " and the head" if spec.init_from_head else "", source)
        return {"init_from": str(source), "init_from_head": spec.init_from_head}
    if cfg.method == "lorasb":
        eg_bs = cfg.lorasb_batch_size or spec.optim.batch_size
        eta = effective_lr(
            cfg.lorasb_lr_rule,
            spec.optim.lr,
            spec.optim.warmup_ratio,
            n_train=len(task.train),
            batch_size=eg_bs,
            epochs=spec.optim.epochs,
            optimizer_steps=total_steps,
        )
        # the first n samples of the first epoch's order, in batches of eg_bs (the same on every process;
        # estimate_gradients computes each batch on one process)
        first = EpochSampler(len(task.train), spec.seed).permutation(1)[: cfg.lorasb_n_samples]
        batches = [task.collate([task.train[i] for i in first[j : j + eg_bs]]) for j in range(0, len(first), eg_bs)]

        def loss_fn(m: nn.Module, batch: Any) -> torch.Tensor:
            with accelerator.autocast():
                return m(**batch).loss

        init = lorasb_init(model, cfg, batches, eta, loss_fn, progress, seed=spec.seed)
        LOG.info("LoRA-SB: %d gradient samples in batches of %d, η_eff = %.6g", len(first), eg_bs, eta)
        inject_adapters(model, cfg, init=init)
        return {"lorasb_eta": eta, "lorasb_samples": len(first), "lorasb_batch_size": eg_bs}
    inject_adapters(model, cfg, progress=progress)
    if cfg.method == "full":
        LOG.info("full fine-tuning: every weight trains")
    else:
        LOG.info(
            "adapter initialised by %s's init%s", cfg.method, f" ({cfg.svd_backend})" if cfg.method == "loraxs" else ""
        )
    return {}


# ------------------------------------------------------------------ optimizer
def _no_decay_ids(model: nn.Module) -> set[int]:
    """Biases and normalisation weights (the HF Trainer's no-decay rule)."""
    ids = set()
    for module in model.modules():
        is_norm = "norm" in type(module).__name__.lower()
        for name, p in module.named_parameters(recurse=False):
            if is_norm or name == "bias":
                ids.add(id(p))
    return ids


def make_optimizer(model: nn.Module, spec: RunSpec, total_steps: int) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW over the trainable parameters in two groups, adapter (``task.lr``) and head (``task.head_lr``), each
    split by the weight-decay rule; the schedule with its warm-up."""
    from transformers import get_scheduler

    o = spec.optim
    heads = head_module_names(model, list(spec.adapter.modules_to_save))
    head_ids = {id(p) for h in heads for p in model.get_submodule(h).parameters()}
    no_decay = set() if o.decay_biases_and_norms else _no_decay_ids(model)
    groups = []
    for part, lr in (("adapter", o.lr), ("head", o.head_lr_value)):
        params = [p for p in model.parameters() if p.requires_grad and (id(p) in head_ids) == (part == "head")]
        for decay in (True, False):
            chosen = [p for p in params if (id(p) not in no_decay) == decay]
            if chosen:
                wd = o.weight_decay if decay else 0.0
                groups.append({"params": chosen, "lr": lr, "weight_decay": wd, "name": part})
    optimizer = torch.optim.AdamW(groups, betas=tuple(o.adam_betas), eps=o.adam_eps)
    scheduler = get_scheduler(
        SCHEDULER_NAMES[o.scheduler],
        optimizer,
        num_warmup_steps=o.warmup(total_steps),
        num_training_steps=total_steps,
    )
    return optimizer, scheduler


# ------------------------------------------------------------------ evaluation
def evaluate(task: Any, model: nn.Module, accelerator: Any, spec: RunSpec, **kw: Any) -> tuple[dict, dict]:
    """The task's metrics and per-example records (generation tasks: ``task.eval_batch_size`` prompts at a time)."""
    batch = getattr(spec.task, "eval_batch_size", None) or spec.trainer.eval_batch_size
    try:
        return task.evaluate(model, accelerator, batch, spec.trainer.progress, **kw)
    finally:
        reshard(model)


@torch.no_grad()
def validation_loss(task: Any, model: nn.Module, accelerator: Any, spec: RunSpec) -> float:
    """Mean loss over the held-out training examples (each batch's loss weighted by its size, as the HF Trainer's
    ``eval_loss``). Every process computes it on the whole (small) set, so all agree."""
    loader = DataLoader(task.val, batch_size=spec.task.eval_batch_size, collate_fn=task.collate)
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for batch in loader:
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            with accelerator.autocast():
                loss = model(**batch).loss
            n = int(batch["input_ids"].shape[0])
            total += float(loss.float()) * n
            count += n
    finally:
        model.train(was_training)
        reshard(model)
    return total / max(1, count)
