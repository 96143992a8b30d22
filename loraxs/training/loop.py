"""The training loop: spec → load → inject → train with Accelerate → evaluate → select → save.

Reads top to bottom; the phases it calls live in :mod:`loraxs.training.phases`. One process or many
(``accelerate launch``, ``torchrun``), CPU or GPU, data parallel or (full fine-tuning) FSDP2. The scheduler is
stepped once per optimizer step (it is not handed to ``accelerator.prepare``, which would step it once per
process). Data order and dropout are seeded from
(seed, epoch), which makes resuming after an epoch exact; resuming injects the adapter without initialising it
(no SVD, no LoRA-SB estimate): its factors come from the checkpoint.

What a run reports (``task.selection``): ``best_epoch`` (GLUE: the best dev epoch by ``task.main_metric``),
``final`` (the last model; the LLM tasks, whose test sets must not choose an epoch), or ``val_loss`` (the
checkpoint with the lowest loss on ``task.val_set_size`` held-out training examples, evaluated every
``task.val_every`` optimizer steps, restored at the end and evaluated once).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .. import count_trainable, save_adapter
from ..io import write_text_atomic
from ..tasks import build_task
from . import checkpoint, run_folder
from .errors import EXIT_PREEMPTED, Preempted, TrainingError
from .phases import (
    EpochSampler,
    attach_adapter,
    evaluate,
    load_base,
    load_base_tokenizer,
    make_accelerator,
    make_optimizer,
    optimizer_steps,
    validation_loss,
)
from .resume import apply_lr_change
from .run_folder import LOG
from .signals import StopRequest
from .spec import RunSpec, model_head
from .tracker import Tracker


def _seed_everything(seed: int) -> None:
    from accelerate.utils import set_seed

    set_seed(seed)


def run(spec: RunSpec, resolved: dict[str, Any], info: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train and evaluate one run (``resolved``: the resolved config, written to ``config.yaml``; ``info``: what
    launched it, e.g. the Hydra overrides, recorded in ``metrics.json``); returns the metrics written there.

    ``metrics.json`` exists from the start with ``status: running``; a run that raises leaves ``status: failed``
    (``interrupted`` for Ctrl-C or a kill signal Python sees) and the error's first line, in ``train.log`` too.
    """
    t0 = time.time()
    if spec.trainer.threads:
        torch.set_num_threads(spec.trainer.threads)
    accelerator = make_accelerator(spec)
    try:
        _check_fsdp(spec, accelerator)
    except TrainingError:
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=False)
        raise
    main = accelerator.is_main_process
    run_dir = run_folder.shared(accelerator, Path(spec.paths.output_dir), spec.name, spec.resume)
    run_folder.setup_logging(run_dir, main)
    if main and spec.resume is not None:
        for leftover in run_folder.remove_temp_files(run_dir):
            LOG.info("removed %s (left by an interrupted write)", leftover)
    if main and spec.resume is None:
        from omegaconf import OmegaConf

        write_text_atomic(run_dir / "config.yaml", OmegaConf.to_yaml(resolved))
    LOG.info("run folder: %s", run_dir)
    LOG.info(
        "%d process(es), %s, mixed precision %s",
        accelerator.num_processes,
        str(accelerator.distributed_type).split(".")[-1],
        accelerator.mixed_precision,
    )
    tracker = Tracker(spec, resolved, run_dir, main)
    prior = run_dir / "metrics.json"
    metrics: dict[str, Any] = json.loads(prior.read_text()) if spec.resume and prior.is_file() else {**(info or {})}
    if spec.resume:  # each resume and what it changed (resume.MAY_CHANGE), in order
        changes = (info or {}).get("resume_changes", {})
        metrics["resumes"] = [*metrics.get("resumes", []), {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), **changes}]
    metrics.update(
        {
            "status": "running",
            "task": spec.task.name,
            "adapter": spec.adapter.method,
            "rank": spec.adapter.rank if spec.adapter.method != "full" else None,
            "seed": spec.seed,
            "table": spec.table,
            "fingerprint": run_folder.fingerprint(resolved),
            "code": run_folder.code_version(),
            "run_dir": str(run_dir),
        }
    )
    tracker.write_metrics(metrics)
    stop = StopRequest().install()
    try:
        return _train(spec, accelerator, run_dir, tracker, t0, metrics, stop)
    except BaseException as e:
        status = {KeyboardInterrupt: "interrupted", Preempted: "preempted"}.get(type(e), "failed")
        error = (str(e).splitlines() or [type(e).__name__])[0]
        LOG.error("%s: %s", status, error)
        tracker.write_metrics({**metrics, "status": status, "error": error})
        raise
    finally:
        stop.uninstall()
        tracker.finish()
        run_folder.close_logging()
        accelerator.end_training()
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=False)


def _check_fsdp(spec: RunSpec, accelerator: Any) -> None:
    """What FSDP does not run, refused before the run folder is made."""
    if not str(accelerator.distributed_type).endswith("FSDP"):
        return
    if spec.adapter.method != "full":
        raise TrainingError(
            f"FSDP shards full fine-tuning only (adapter=full); adapter={spec.adapter.method} trains its few "
            "parameters with data parallelism: accelerate launch --config_file scripts/accelerate/ddp.yaml"
        )
    if spec.task.family == "lm":
        raise TrainingError(
            f"task={spec.task.name} is not supported under FSDP (its evaluation gives the processes unequal numbers "
            "of windows, and a sharded forward pass needs all of them); use scripts/accelerate/ddp.yaml"
        )


def _train(
    spec: RunSpec,
    accelerator,
    run_dir: Path,
    tracker: Tracker,
    t0: float,
    metrics: dict[str, Any],
    stop: StopRequest,
) -> dict[str, Any]:
    main = accelerator.is_main_process
    o, t = spec.optim, spec.task
    _seed_everything(spec.seed)

    # ---- model, tokenizer, data
    tokenizer = load_base_tokenizer(spec, accelerator)
    task = build_task(t, tokenizer)  # the data is read and checked before the model loads
    model, tokenizer = load_base(spec, accelerator, tokenizer)
    LOG.info(
        "task %s: %d training examples%s, eval %s",
        t.name,
        len(task.train),
        f" (+{len(task.val)} held out)" if task.val else "",
        {k: len(v) for k, v in task.evals.items()},
    )
    sampler = EpochSampler(len(task.train), spec.seed)
    train_loader = DataLoader(
        task.train,
        batch_size=o.batch_size,
        sampler=sampler,
        collate_fn=task.collate,
        num_workers=spec.trainer.num_workers,
    )
    total_steps = optimizer_steps(len(task.train), spec, accelerator.num_processes)

    # ---- adapter, optimizer, schedule
    ckpt_path = run_dir / "checkpoints" / "last.pt"
    init_info = attach_adapter(model, spec, task, accelerator, total_steps, resuming=spec.resume is not None)
    counts = count_trainable(model).as_dict()
    LOG.info(
        "trainable parameters: adapter %s, head %s, total %s",
        *(f"{counts[k]:,}" for k in ("adapter", "head", "total")),
    )
    optimizer, scheduler = make_optimizer(model, spec, total_steps)
    model, optimizer, train_loader = accelerator.prepare(model, optimizer, train_loader)

    # ---- resume
    progress: dict[str, Any] = {
        "epoch": 0,
        "step": 0,
        "evals": [],
        "best": {},
        "best_epoch": None,
        "val_losses": [],  # {"step", "loss"} for selection=val_loss
        "best_val": None,
        "train_time": 0.0,
        "last_loss": None,
        "loss_windows": [],  # mean training loss of every trainer.log_every steps
        "window": [],
        "init": init_info,
        "batches_done": 0,  # micro-batches of epoch (epoch + 1) consumed when the checkpoint was written
        "rng": None,  # per process: the torch random states at that moment (dropout)
        "accumulation_step": 0,  # Accelerate's micro-batch counter (when gradients synchronise)
        "processes": accelerator.num_processes,  # the data split, the schedule and the random states depend on it
    }
    if spec.resume:
        wanted = [g.get("initial_lr", g["lr"]) for g in optimizer.param_groups]  # the resumed config's lrs
        progress.update(checkpoint.load(ckpt_path, accelerator.unwrap_model(model), optimizer, scheduler))
        if progress.get("processes", accelerator.num_processes) != accelerator.num_processes:
            raise TrainingError(
                f"checkpoint {ckpt_path} was written by {progress['processes']} process(es) and this run has "
                f"{accelerator.num_processes}; resume with {progress['processes']} (the data split across processes, "
                "the schedule length and the random states depend on it)"
            )
        LOG.info(
            "resumed from %s after epoch %d%s (step %d)",
            ckpt_path,
            progress["epoch"],
            f" and {progress['batches_done']} batches of epoch {progress['epoch'] + 1}"
            if progress["batches_done"]
            else "",
            progress["step"],
        )
        accelerator.step = int(progress["accumulation_step"])
        for old, new in apply_lr_change(optimizer, scheduler, wanted):
            LOG.info(
                "learning rate changed on resume: %g -> %g (the schedule goes on from step %d)",
                old,
                new,
                progress["step"],
            )

    metrics.update(
        trainable=counts,
        total_steps=total_steps,
        main_metric=t.main_metric,
        selection=t.selection,
        init=progress["init"],
    )
    tracker.summary({"trainable/" + k: v for k, v in counts.items()})
    step = int(progress["step"])
    t_train = time.time() - float(progress["train_time"])

    def record_eval(epoch: int, label: str | None = None) -> dict[str, Any]:
        nonlocal t_train
        started = time.time()
        values, preds = evaluate(task, model, accelerator, spec)
        t_train += time.time() - started  # train_time_s counts training only
        if main:
            _write_predictions(run_dir / "predictions", label or f"epoch{epoch}", preds)
        rec = {"epoch": epoch, "step": step, "lr": scheduler.get_last_lr()[0], **values}
        if label:
            rec["selected"] = label
        progress["evals"].append(rec)
        LOG.info(
            "%s step %d: %s", label or f"epoch {epoch}", step, ", ".join(f"{k} {v:.4f}" for k, v in values.items())
        )
        tracker.log({f"eval/{k}": v for k, v in values.items()}, step)
        return rec

    def check_validation() -> None:
        nonlocal t_train
        started = time.time()
        loss = validation_loss(task, accelerator.unwrap_model(model), accelerator, spec)
        t_train += time.time() - started
        progress["val_losses"].append({"step": step, "loss": loss})
        tracker.log({"val/loss": loss}, step)
        if progress["best_val"] is None or loss < progress["best_val"]["loss"]:
            progress["best_val"] = {"step": step, "loss": loss}
            if main:
                save_adapter(accelerator.unwrap_model(model), run_dir / "adapter_best", step=step, task=t.name)
            LOG.info("step %d: validation loss %.4f (best so far)", step, loss)
        accelerator.wait_for_everyone()

    saved_at = {"step": int(progress["step"]) if spec.resume else None}  # the step of checkpoints/last.pt

    def save_checkpoint(batches_done: int) -> None:
        """checkpoints/last.pt (atomic), ``batches_done`` micro-batches into epoch ``progress["epoch"] + 1``."""
        from accelerate.utils import gather_object

        states = gather_object([checkpoint.rng_state()]) if accelerator.num_processes > 1 else [checkpoint.rng_state()]
        progress.update(
            step=step,
            batches_done=batches_done,
            rng=states,
            accumulation_step=accelerator.step,
            train_time=time.time() - t_train,
        )
        keep, previous = spec.trainer.keep_checkpoints, saved_at["step"]
        unwrapped = accelerator.unwrap_model(model)  # every process gathers its shards (FSDP); the main one writes
        checkpoint.save(ckpt_path, unwrapped, optimizer, scheduler, progress, keep, previous, write=main)
        saved_at["step"] = step
        accelerator.wait_for_everyone()

    def stop_requested() -> bool:
        """A stop signal reached any process (all processes agree, so they checkpoint and stop together)."""
        flag = stop.signum is not None
        if accelerator.num_processes > 1:
            flag = bool(accelerator.reduce(torch.tensor([float(flag)], device=accelerator.device), "sum").item())
        return flag

    # ---- epochs
    for epoch in range(int(progress["epoch"]) + 1, o.epochs + 1):
        if step >= total_steps:
            break
        train_loader.set_epoch(epoch)  # the prepared loader passes it to EpochSampler (its own counter would not)
        _seed_everything(spec.seed * 1000 + epoch + 7919 * accelerator.process_index)
        skip, loader, rng = int(progress["batches_done"]), train_loader, None
        if skip:  # resuming mid-epoch: the same order, the consumed batches skipped, the random state restored
            loader = accelerator.skip_first_batches(train_loader, skip)
            loader.set_epoch(epoch)
            rng = progress["rng"][accelerator.process_index]
        progress["batches_done"] = 0
        window_sum, window_n = 0.0, 0  # the training loss of the current accumulation window
        model.train()
        bar = tqdm(
            loader,
            desc=f"epoch {epoch}/{o.epochs}",
            initial=skip,
            total=len(train_loader),
            disable=not (main and spec.trainer.progress),
        )
        for batches_done, batch in enumerate(bar, start=skip + 1):
            if rng is not None:  # restored after the loader's iterator exists (creating it draws a seed)
                checkpoint.set_rng_state(rng)
                rng = None
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                if not torch.isfinite(loss.detach()).all():
                    _diverged(loss, epoch, step, ckpt_path)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    if o.max_grad_norm is not None:
                        accelerator.clip_grad_norm_(model.parameters(), o.max_grad_norm)
                    optimizer.step()
                    if not accelerator.optimizer_step_was_skipped:
                        scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
            window_sum, window_n = window_sum + loss.detach().float(), window_n + 1
            if accelerator.sync_gradients:
                step += 1
                # the logged loss: the mean over the accumulation window's micro-batches and over the processes
                mean = window_sum / window_n
                value = (accelerator.reduce(mean, "mean") if accelerator.num_processes > 1 else mean).item()
                window_sum, window_n = 0.0, 0
                progress["last_loss"] = value
                progress["window"].append(value)
                if len(progress["window"]) == spec.trainer.log_every:
                    progress["loss_windows"].append(sum(progress["window"]) / len(progress["window"]))
                    progress["window"] = []
                lr_now = scheduler.get_last_lr()[0]
                bar.set_postfix(loss=f"{value:.4f}", lr=f"{lr_now:.2e}")
                tracker.log({"train/loss": value, "train/lr": lr_now, "train/epoch": epoch}, step)
                if t.selection == "val_loss" and step % t.val_every == 0:
                    check_validation()
                if step >= total_steps:
                    break
                every_steps = spec.trainer.checkpoint_steps
                if every_steps and step % every_steps == 0 and batches_done < len(train_loader):
                    save_checkpoint(batches_done)
                if stop_requested():
                    if saved_at["step"] != step:
                        save_checkpoint(batches_done)
                    raise Preempted(
                        f"stopped by {stop.name} at step {step} with a checkpoint; continue with resume={run_dir} "
                        f"(exit code {EXIT_PREEMPTED})"
                    )
                if spec.trainer.interrupt_at_step and step == spec.trainer.interrupt_at_step:
                    raise KeyboardInterrupt(f"trainer.interrupt_at_step={step}")
        bar.close()

        # ---- evaluate (every epoch, or once after the last one)
        last = epoch == o.epochs or step >= total_steps
        if t.eval_every_epoch or (last and t.selection != "val_loss"):
            rec = record_eval(epoch)
            _update_best(progress, rec, epoch, t.main_metric)
            if progress["best_epoch"] == epoch and t.selection == "best_epoch":
                if spec.trainer.save_best_adapter and spec.adapter.method == "full":  # the best epoch's model
                    _save_model(accelerator, model, tokenizer, run_dir / "model_best")  # (every process gathers)
                elif spec.trainer.save_best_adapter and main:
                    save_adapter(accelerator.unwrap_model(model), run_dir / "adapter_best", epoch=epoch, task=t.name)
        progress["epoch"] = epoch
        progress["step"] = step
        progress["train_time"] = time.time() - t_train
        every = spec.trainer.checkpoint_every
        if every and (epoch % every == 0 or last):
            save_checkpoint(0)
        metrics.update(_summary(progress), finished=False)
        tracker.write_metrics(metrics)
        accelerator.wait_for_everyone()
        if not last and stop_requested():  # a signal during the evaluation: stop at the epoch boundary
            if saved_at["step"] != step:
                save_checkpoint(0)
            raise Preempted(
                f"stopped by {stop.name} after epoch {epoch} with a checkpoint; continue with resume={run_dir} "
                f"(exit code {EXIT_PREEMPTED})"
            )

    # ---- the reported evaluation
    unwrapped = accelerator.unwrap_model(model)
    final_epoch = int(progress["epoch"])
    if t.selection == "val_loss":
        if progress["best_val"] is None:  # no validation step was reached: validate the final model
            check_validation()
        _restore_adapter(unwrapped, run_dir / "adapter_best")
        LOG.info("restored the adapter of step %d (validation loss %.4f)", *progress["best_val"].values())
        reported = record_eval(final_epoch, label=f"val_loss_step{progress['best_val']['step']}")
    elif not progress["evals"] or progress["evals"][-1]["step"] != step:  # e.g. max_steps=0: evaluate the init
        reported = record_eval(final_epoch)
        _update_best(progress, reported, final_epoch, t.main_metric)
    elif t.selection == "best_epoch":
        reported = next(e for e in progress["evals"] if e["epoch"] == progress["best_epoch"])
    else:
        reported = progress["evals"][-1]

    # ---- final adapter and metrics
    if spec.adapter.method == "full":
        _save_model(accelerator, model, tokenizer, run_dir / "model")
    if main:
        if spec.adapter.method != "full":
            save_adapter(unwrapped, run_dir / "adapter", task=t.name, base_model=spec.model.name_or_path)
            _export_peft(unwrapped, spec, run_dir, reported)
    metrics.update(
        _summary(progress),
        reported=reported,
        wall_time_s=round(time.time() - t0, 2),
        last_train_loss=progress["last_loss"],
        train_loss_windows=[round(v, 5) for v in progress["loss_windows"]],
        finished=True,
        status="finished",
    )
    tracker.write_metrics(metrics)
    if main and spec.export_to:
        LOG.info(
            "exported the reported %s to %s",
            "model" if spec.adapter.method == "full" else "adapter",
            run_folder.export(run_dir, spec.export_to),
        )
    tracker.summary({f"reported/{k}": v for k, v in reported.items() if k not in ("epoch", "step", "lr", "selected")})
    LOG.info(
        "done in %.0f s: %s %.4f (%s, epoch %s, step %s); run folder %s",
        metrics["wall_time_s"],
        t.main_metric,
        reported.get(t.main_metric, float("nan")),
        t.selection,
        reported.get("epoch"),
        reported.get("step"),
        run_dir,
    )
    accelerator.wait_for_everyone()
    return metrics


def _update_best(progress: dict[str, Any], rec: dict[str, Any], epoch: int, main_metric: str) -> None:
    """Per metric, the best value over the evaluations so far and its epoch (the LoRA-SB rule: max over epochs)."""
    for k, v in rec.items():
        if k in ("epoch", "step", "lr", "selected") or not isinstance(v, float):
            continue
        if progress["best"].get(k) is None or v > progress["best"][k]["value"]:
            progress["best"][k] = {"value": v, "epoch": epoch}
    if progress["best"].get(main_metric, {}).get("epoch") == epoch:
        progress["best_epoch"] = epoch


def _summary(progress: dict[str, Any]) -> dict[str, Any]:
    out = {
        "evals": progress["evals"],
        "best": progress["best"],
        "best_epoch": progress["best_epoch"],
        "train_time_s": round(progress["train_time"], 2),
    }
    if progress["val_losses"]:
        out.update(val_losses=progress["val_losses"], best_val=progress["best_val"])
    return out


@torch.no_grad()
def _restore_adapter(model: torch.nn.Module, folder: Path) -> None:
    """Copy the tensors of an adapter folder saved from this run back into ``model`` (same names)."""
    from safetensors.torch import load_file

    from ..adapter_files import adapter_paths

    params = dict(model.named_parameters())
    for name, tensor in load_file(adapter_paths(folder)[1]).items():
        params[name].copy_(tensor.to(params[name]))


def _export_peft(model: torch.nn.Module, spec: RunSpec, run_dir: Path, reported: dict[str, Any]) -> None:
    """``adapter_peft/``: the reported adapter (the selected epoch's or step's, else the final one) as a standard
    PEFT LoRA folder that ``peft.PeftModel.from_pretrained`` and vLLM load; the model is left as it was."""
    from .. import export_peft_lora
    from ..models import causal_lm_path, resolve

    decoder = spec.model.kind == "decoder"
    base = causal_lm_path(spec.model, spec.paths.cache_dir) if decoder else resolve(spec.model.name_or_path)
    selected = reported.get("selected") or (
        "best_epoch" if spec.task.selection == "best_epoch" and (run_dir / "adapter_best").is_dir() else None
    )
    if selected:
        _restore_adapter(model, run_dir / "adapter_best")
    # PEFT's task type of the head (it has none for multiple choice: the generic PeftModel)
    task_type = {
        "sequence_classification": "SEQ_CLS",
        "question_answering": "QUESTION_ANS",
        "causal_lm": "CAUSAL_LM",
        "multiple_choice": None,
    }[model_head(spec.task)]
    _replace_folder(
        run_dir / "adapter_peft",
        lambda tmp: export_peft_lora(model, tmp, base_model_name_or_path=base, task_type=task_type),
    )
    if selected:
        _restore_adapter(model, run_dir / "adapter")
    LOG.info("PEFT LoRA copy of the reported adapter: %s", run_dir / "adapter_peft")


def _write_predictions(folder: Path, label: str, preds: dict[str, list[dict[str, Any]]]) -> None:
    """``predictions/<split>_<label>.jsonl``: one JSON object per evaluated example (atomic)."""
    folder.mkdir(exist_ok=True)
    for split, rows in preds.items():
        write_text_atomic(folder / f"{split}_{label}.jsonl", "".join(json.dumps(r) + "\n" for r in rows))


def _save_model(accelerator: Any, model: torch.nn.Module, tokenizer: Any, dest: Path) -> None:
    """A whole model (full fine-tuning) as a HF ``save_pretrained`` folder, replaced atomically. Every process
    calls it: ``accelerator.get_state_dict`` gathers the full weights (sharded under FSDP) and the main process
    writes them."""
    state_dict = accelerator.get_state_dict(model)

    def write(tmp: Path) -> None:
        accelerator.unwrap_model(model).save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
        tokenizer.save_pretrained(tmp)

    if accelerator.is_main_process:
        _replace_folder(dest, write)
    accelerator.wait_for_everyone()


def _replace_folder(dest: Path, write: Any) -> None:
    """``write(tmp)`` fills a temporary folder beside ``dest``, which is then renamed into place (a reader never
    sees half a folder; a crash leaves ``dest`` as it was and a ``.tmp`` folder that the next start removes)."""
    tmp, old = dest.with_name(f".{dest.name}.tmp"), dest.with_name(f".{dest.name}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    write(tmp)
    if dest.exists():
        dest.rename(old)
    tmp.rename(dest)
    shutil.rmtree(old, ignore_errors=True)


def _diverged(loss: torch.Tensor, epoch: int, step: int, ckpt: Path) -> None:
    how = (
        f"continue from its last checkpoint ({ckpt}) with a lower learning rate: python experiments/train.py "
        f"resume={ckpt.parent.parent} task.lr=<lower>"
        if ckpt.is_file()
        else "no checkpoint yet: start again with a lower task.lr"
    )
    raise TrainingError(
        f"loss became {loss.detach().float().item()} at epoch {epoch}, step {step + 1}; run stopped. {how}, "
        "or check the data"
    )


__all__ = ["EpochSampler", "run"]
