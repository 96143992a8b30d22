"""Adapter benchmark: step time against the floor, training memory, file sizes, SVD init time.

Prints, side by side from one run, for a RoBERTa-base-shaped and a RoBERTa-large-shaped model (random
weights, built from configs) on CPU, and on GPU when one is there:

- step time (forward + backward + optimizer) of lora, loraxs, lorasb, full and PEFT's LoRA, each as a ratio to
  the floor: the frozen base run forward and backward to its input embeddings (activation gradients through
  every layer, no weight gradients). ``loraxs_naive`` is the straightforward unfused r×r layer, for reference.
  Methods are timed in interleaved rounds (one step of each per round) and the median is reported.
- memory: bytes saved for backward (activations, via saved-tensor hooks), gradients and optimizer state; on
  GPU also the peak allocated memory of a step;
- adapter file bytes (compact and full) against PEFT LoRA r=8, with and without the task head;
- LoRA-XS SVD init time per backend, the official scikit-learn path included, with each backend's
  excess reconstruction error over the optimal rank-r approximation (accuracy next to speed).

Usage::

    python experiments/bench_adapters.py                    # both shapes, CPU (+ GPU if present)
    python experiments/bench_adapters.py --shapes base --reps 10 --threads 2
    python experiments/bench_adapters.py --svd-only --svd-backends krylov,sklearn
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from loraxs import AdapterConfig, adapter_layers, inject_adapters, lorasb_init, save_adapter
from loraxs.init import init_xs_svd
from loraxs.layers import XSLayer

TARGETS = ["query", "value", "attention.output.dense", "output.dense"]
SHAPES = {
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
}


def build_roberta(shape: str, seed: int = 0) -> nn.Module:
    from transformers import RobertaConfig, RobertaForSequenceClassification

    torch.manual_seed(seed)
    cfg = RobertaConfig(vocab_size=50265, max_position_embeddings=514, type_vocab_size=1, num_labels=2, **SHAPES[shape])
    return RobertaForSequenceClassification(cfg)


class NaiveXS(nn.Module):
    """The straightforward r×r layer, ``base(x) + s·((x Aᵀ) Rᵀ) Bᵀ`` with plain autograd (reference only)."""

    def __init__(self, layer: XSLayer) -> None:
        super().__init__()
        self.base_layer, self.scale = layer.base_layer, layer.scale
        self.A, self.B, self.R = layer.lora_A, layer.lora_B, layer.lora_R

    def forward(self, x):
        return self.base_layer(x) + self.scale * ((x @ self.A.t()) @ self.R.t()) @ self.B.t()


def make_variants(base: nn.Module, xs_rank: int, lora_rank: int, batch: dict) -> dict[str, nn.Module]:
    variants: dict[str, nn.Module] = {}
    floor = copy.deepcopy(base)
    for p in floor.parameters():
        p.requires_grad_(False)
    variants["floor"] = floor
    cfg = dict(target_modules=TARGETS, modules_to_save=["classifier"])
    variants["lora"] = inject_adapters(
        copy.deepcopy(base), AdapterConfig(method="lora", rank=lora_rank, alpha=16, **cfg)
    )
    variants["loraxs"] = inject_adapters(
        copy.deepcopy(base), AdapterConfig(method="loraxs", rank=xs_rank, alpha=16, **cfg)
    )
    sb_model = copy.deepcopy(base)
    sb_cfg = AdapterConfig(method="lorasb", rank=xs_rank, svd_backend="torch_lowrank", svd_oversample=0, **cfg)
    variants["lorasb"] = inject_adapters(sb_model, sb_cfg, init=lorasb_init(sb_model, sb_cfg, [batch], eta=1e-3 / 60))
    naive = copy.deepcopy(variants["loraxs"])
    for name in list(adapter_layers(naive)):
        parent, _, child = name.rpartition(".")
        setattr(naive.get_submodule(parent), child, NaiveXS(naive.get_submodule(name)))
    variants["loraxs_naive"] = naive
    variants["full"] = inject_adapters(copy.deepcopy(base), AdapterConfig(method="full"))
    try:
        from peft import LoraConfig, get_peft_model

        variants["peft_lora"] = get_peft_model(
            copy.deepcopy(base),
            LoraConfig(
                r=lora_rank, lora_alpha=16, target_modules=TARGETS, modules_to_save=["classifier"], lora_dropout=0.0
            ),
        )
    except ImportError:
        print("peft is not installed: the PEFT LoRA peer is skipped (pip install peft)")
    return variants


class Stepper:
    """One training step of a variant; the floor backpropagates to its (detached) input embeddings."""

    def __init__(self, name: str, model: nn.Module, batch: dict) -> None:
        self.name, self.model, self.batch = name, model.train(), batch
        params = [p for p in model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(params, lr=1e-5) if params else None
        if name == "floor":
            emb = model.get_input_embeddings()
            self.embeds = emb(batch["input_ids"]).detach()

    def __call__(self) -> None:
        if self.opt is None:
            x = self.embeds.clone().requires_grad_(True)
            loss = self.model(
                inputs_embeds=x, attention_mask=self.batch["attention_mask"], labels=self.batch["labels"]
            ).loss
            loss.backward()
            return
        loss = self.model(**self.batch).loss
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_steps(
    steppers: dict[str, Stepper], reps: int, warmup: int, device: torch.device
) -> tuple[dict[str, float], dict[str, float]]:
    """Median and minimum step time of each variant, from interleaved rounds."""
    for s in steppers.values():
        for _ in range(warmup):
            s()
    times: dict[str, list[float]] = {n: [] for n in steppers}
    for _ in range(reps):
        for n, s in steppers.items():
            sync(device)
            t = time.perf_counter()
            s()
            sync(device)
            times[n].append(time.perf_counter() - t)
    return {n: statistics.median(v) for n, v in times.items()}, {n: min(v) for n, v in times.items()}


def memory(stepper: Stepper, device: torch.device) -> dict[str, float]:
    """MB saved for backward, MB of gradients + optimizer state, and (GPU) peak MB of one step."""
    seen: dict[int, int] = {}

    def pack(t):
        if t.device.type == device.type:
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        stepper()
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else float("nan")
    params = {id(p): p for p in stepper.model.parameters()}
    weights = {p.untyped_storage().data_ptr() for p in params.values()}
    saved = sum(b for ptr, b in seen.items() if ptr not in weights)
    trainable = [p for p in params.values() if p.requires_grad]
    grads_opt = sum(p.numel() * p.element_size() for p in trainable) * 3  # grad + exp_avg + exp_avg_sq
    return {"saved_MB": saved / 2**20, "grad_opt_MB": grads_opt / 2**20, "peak_MB": peak}


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.suffix in (".json", ".safetensors"))


def file_sizes(variants: dict[str, nn.Module], tmp: Path) -> list[tuple[str, int, int]]:
    head = sum(p.numel() * p.element_size() for p in variants["loraxs"].classifier.parameters())
    rows = []
    for label, name, compact in [
        ("loraxs compact", "loraxs", True),
        ("loraxs full", "loraxs", False),
        ("lorasb", "lorasb", False),
        ("lora", "lora", False),
    ]:
        d = save_adapter(variants[name], tmp / label.replace(" ", "_"), compact=compact)
        rows.append((label, dir_bytes(d), dir_bytes(d) - head))
    if "peft_lora" in variants:
        d = tmp / "peft"
        variants["peft_lora"].save_pretrained(d)
        rows.append(
            (f"PEFT LoRA r={variants['peft_lora'].peft_config['default'].r}", dir_bytes(d), dir_bytes(d) - head)
        )
    return rows


def target_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """The LoRA-XS target weights ``W (d_out, d_in)`` of a RoBERTa model, by module name."""
    return {
        name: module.weight.detach()
        for name, module in model.named_modules()
        if name.endswith(tuple(TARGETS)) and isinstance(module, nn.Linear) and "classifier" not in name
    }


def optimal_errors(weights: dict[str, torch.Tensor], rank: int) -> dict[str, float]:
    """``‖W − W_r‖_F`` of the best rank-r approximation (exact singular values, batched per shape)."""
    out: dict[str, float] = {}
    by_shape: dict[tuple, list[str]] = {}
    for name, w in weights.items():
        by_shape.setdefault(tuple(w.shape), []).append(name)
    for names in by_shape.values():
        s = torch.linalg.svdvals(torch.stack([weights[n] for n in names]).double())
        for n, tail in zip(names, s[:, rank:].pow(2).sum(-1).sqrt().tolist()):
            out[n] = tail
    return out


def official_sklearn_path(model: nn.Module, rank: int) -> tuple[float, dict[str, torch.Tensor]]:
    """The official LoRA-XS path per module: TruncatedSVD(n_iter=10, random_state=42) on Wᵀ, then
    ``fit``, ``transform`` and ``inverse_transform`` as its ``get_linear_rec_svd`` does.

    Returns the summed time of those calls and each module's rank-r reconstruction of ``W``."""
    from sklearn.decomposition import TruncatedSVD

    seconds, recon = 0.0, {}
    for name, w in target_weights(model).items():
        x = w.T.numpy()
        t = time.perf_counter()
        svd = TruncatedSVD(n_components=rank, n_iter=10, random_state=42)
        svd.fit(x)
        x_rec = svd.inverse_transform(svd.transform(x))
        seconds += time.perf_counter() - t
        recon[name] = torch.from_numpy(x_rec).T
    return seconds, recon


def svd_times(shape: str, rank: int, backends: list[str], reps: int = 3) -> dict[str, tuple[float, float, float]]:
    """Per backend: the best of ``reps`` init times (seconds), and the mean and max over modules of the
    excess error ``‖W − B A‖_F / ‖W − W_r‖_F − 1`` (0 = the optimal rank-r approximation).

    Rounds are interleaved (one run of every backend per round), so a slow spell of a shared machine
    hits all backends alike; the best of the rounds is the figure least disturbed by other load."""
    model = build_roberta(shape)
    weights = target_weights(model)
    optimal = optimal_errors(weights, rank)

    def excess(recon: dict[str, torch.Tensor]) -> tuple[float, float]:
        e = [
            (torch.linalg.matrix_norm(weights[n].double() - recon[n].double()).item() / optimal[n]) - 1 for n in weights
        ]
        return statistics.fmean(e), max(e)

    injected = {}
    for backend in backends:
        m = copy.deepcopy(model)
        cfg = AdapterConfig(method="loraxs", rank=rank, target_modules=TARGETS, svd_backend=backend)
        inject_adapters(m, cfg, init=False)
        injected[backend] = (adapter_layers(m), cfg)
    seconds: dict[str, list[float]] = {}
    recons: dict[str, dict[str, torch.Tensor]] = {}
    for _ in range(reps):
        if "sklearn" in backends:
            sec, recons["official sklearn path"] = official_sklearn_path(model, rank)
            seconds.setdefault("official sklearn path", []).append(sec)
        for backend, (layers, cfg) in injected.items():
            t = time.perf_counter()
            init_xs_svd(layers, cfg)
            seconds.setdefault(backend, []).append(time.perf_counter() - t)
    for backend, (layers, _) in injected.items():
        recons[backend] = {n: (layer.lora_B @ layer.lora_A).detach() for n, layer in layers.items()}
    return {label: (min(seconds[label]), *excess(recons[label])) for label in seconds}


def run_shape(shape: str, device: torch.device, args) -> None:
    bsz, seq = (args.batch, args.seq) if shape == "base" else (args.large_batch, args.seq)
    print(
        f"\n=== RoBERTa-{shape} shape ({sum(SHAPES[shape].values())} cfg), {device}, batch {bsz}x{seq}, "
        f"loraxs/lorasb r={args.rank}, lora/PEFT r={args.lora_rank} ==="
    )
    base = build_roberta(shape).to(device)
    g = torch.Generator().manual_seed(0)
    batch = {
        "input_ids": torch.randint(3, 50000, (bsz, seq), generator=g).to(device),
        "attention_mask": torch.ones(bsz, seq, dtype=torch.long).to(device),
        "labels": torch.randint(0, 2, (bsz,), generator=g).to(device),
    }
    variants = make_variants(base, args.rank, args.lora_rank, batch)
    del base
    steppers = {n: Stepper(n, m, batch) for n, m in variants.items()}
    reps = args.reps if shape == "base" else args.large_reps
    t, best = time_steps(steppers, reps, args.warmup, device)
    mem = {n: memory(s, device) for n, s in steppers.items()}
    print(
        f"{'method':<14}{'median ms':>10}{'x floor':>9}{'best x':>8}{'saved MB':>10}{'grad+opt MB':>13}{'peak MB':>9}"
    )
    for n in steppers:
        m = mem[n]
        print(
            f"{n:<14}{t[n] * 1e3:>10.1f}{t[n] / t['floor']:>9.3f}{best[n] / best['floor']:>8.3f}{m['saved_MB']:>10.1f}"
            f"{m['grad_opt_MB']:>13.2f}{m['peak_MB']:>9.0f}"
        )
    if device.type == "cpu":
        with tempfile.TemporaryDirectory() as tmp:
            rows = file_sizes(variants, Path(tmp))
        print(f"\n{'adapter file':<18}{'bytes':>12}{'without head':>14}")
        for label, b, nh in rows:
            print(f"{label:<18}{b:>12,}{nh:>14,}")
    del variants, steppers
    if device.type == "cuda":
        torch.cuda.empty_cache()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shapes", default="base,large", help="comma list of: base, large")
    p.add_argument("--rank", type=int, default=16, help="rank of loraxs and lorasb")
    p.add_argument("--lora-rank", type=int, default=8, help="rank of lora and PEFT LoRA")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--large-batch", type=int, default=4, help="batch of the large shape on CPU")
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--large-reps", type=int, default=4)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    p.add_argument(
        "--svd-backends",
        default="krylov,randomized,torch_lowrank,sklearn,torch",
        help="backends to time for the LoRA-XS init; '' skips",
    )
    p.add_argument("--svd-reps", type=int, default=3, help="interleaved rounds of SVD init timing; best is shown")
    p.add_argument("--svd-only", action="store_true", help="only the SVD init section")
    p.add_argument("--no-gpu", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    shapes = [s for s in args.shapes.split(",") if s]
    for s in shapes:
        if s not in SHAPES:
            p.error(f"unknown shape {s!r}; valid: {', '.join(SHAPES)}")
    print(f"torch {torch.__version__}, {args.threads} CPU threads")
    devices = [torch.device("cpu")]
    if torch.cuda.is_available() and not args.no_gpu:
        devices.append(torch.device("cuda"))
    for device in [] if args.svd_only else devices:
        for s in shapes:
            if device.type == "cuda":
                args.large_batch = args.batch
            run_shape(s, device, args)
    backends = [b for b in args.svd_backends.split(",") if b]
    if backends:
        for s in shapes:
            times = svd_times(s, args.rank, backends, args.svd_reps)
            ref = times.get("official sklearn path", (None,))[0]
            print(
                f"\nLoRA-XS SVD init, RoBERTa-{s} shape, all {4 * SHAPES[s]['num_hidden_layers']} modules, "
                f"r={args.rank}, CPU, best of {args.svd_reps} interleaved rounds; "
                f"excess error = ‖W − B A‖_F / ‖W − W_r‖_F − 1 over modules:"
            )
            print(f"  {'backend':<22}{'seconds':>9}{'vs official':>13}{'excess mean':>13}{'excess max':>12}")
            for b, (v, e_mean, e_max) in times.items():
                speed = f"{ref / v:.2f}x" if ref and b != "official sklearn path" else ""
                print(f"  {b:<22}{v:9.2f}{speed:>13}{e_mean:>13.2e}{e_max:>12.2e}")


if __name__ == "__main__":
    main()
