"""`AdapterConfig`: every knob of an adapter, as a plain dataclass (no Hydra here).

The methods (METHODS.md §1), with a frozen layer ``y = x Wᵀ + b``, ``W`` of shape ``(d_out, d_in)``:

- ``lora``:           ``y += s · (x Aᵀ) Bᵀ``        trainable A ``(r, d_in)``, B ``(d_out, r)``
- ``loraxs``:         ``y += s · ((x Aᵀ) Rᵀ) Bᵀ``   trainable R ``(r, r)``; A = Σ_r V_rᵀ, B = U_r (SVD of W)
- ``loraxs_random``:  as ``loraxs`` with Kaiming-uniform A and B (the papers' ablation)
- ``lorasb``:         as ``loraxs`` with s = 1; B, R, A from an estimate of the first full update
- ``full``:           no adapter; every weight trains

with ``s = alpha / r``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

METHODS = ("lora", "loraxs", "loraxs_random", "lorasb", "full")
XS_METHODS = ("loraxs", "loraxs_random", "lorasb")
SVD_BACKENDS = ("krylov", "randomized", "torch", "torch_lowrank", "sklearn")
LORASB_LR_RULES = ("warmup", "warmup_optimizer_steps", "lr")


@dataclass
class AdapterConfig:
    """Configuration of one adapter.

    Attributes:
        method: one of ``lora | loraxs | loraxs_random | lorasb | full``.
        rank: r, with ``1 <= r <= min(d_in, d_out)`` for every targeted layer.
        alpha: scale numerator, ``s = alpha / r``. ``None`` means ``alpha = r`` (s = 1).
            LoRA-SB always uses s = 1 (alpha is forced to r).
        dropout: dropout on the adapter's input (``x`` in ``x Aᵀ``); 0 disables it.
        target_modules: module-name suffixes to wrap, matched like PEFT: a module named ``n``
            is a target when ``n == t`` or ``n.endswith("." + t)``.
        modules_to_save: module-name suffixes (task heads) kept fully trainable and saved with the adapter.
        svd_backend: ``krylov`` (default: randomised block Krylov, more accurate than the official path
            and faster), ``randomized`` (the official algorithm, subspace iteration, same fast
            implementation; both in :mod:`loraxs.rsvd`), ``torch`` (exact ``torch.linalg.svd``),
            ``torch_lowrank`` (``torch.svd_lowrank``, the official LoRA-SB call) or ``sklearn``
            (``TruncatedSVD`` on ``Wᵀ``, the official LoRA-XS path).
        svd_n_iter: subspace iterations of ``randomized``, ``torch_lowrank`` and ``sklearn`` (official: 10).
        svd_krylov_depth: Krylov blocks after the first for ``krylov`` (each one pass with ``Wᵀ`` and one with ``W``).
        svd_oversample: extra columns per block (``krylov``/``randomized`` round ``r + oversample`` up to a
            multiple of 8; ``sklearn`` always uses 10).
        seed: seed of the randomised SVD and of the random inits (official: 42).
        r_init_std: standard deviation of the LoRA-XS ``R ~ N(0, σ²)`` init (official: 1e-5).
        lorasb_n_samples: training samples whose gradients estimate the first update, the same number
            whatever the number of processes (official: 2 for GLUE, 50 for math, 170 for commonsense).
        lorasb_batch_size: batch size of the estimate, ``eg_bs`` (official: 3 math, 10 commonsense, the
            training batch for GLUE); ``None`` = the training batch size.
        lorasb_lr_rule: ``η_eff`` of ``ΔW = −η_eff · sign(G)``. ``warmup`` (official):
            ``lr / (warmup_ratio · total)``, ``total = ⌈N_train / lorasb_batch_size⌉ · epochs`` (the official
            ``len(loader at eg_bs) · epochs``, whatever the optimizer steps); ``warmup_optimizer_steps``: the same
            with ``total`` = optimizer steps (this toolkit's earlier rule; equal for GLUE); ``lr``: ``η_eff = lr``.
    """

    method: str = "loraxs"
    rank: int = 16
    alpha: float | None = 16.0
    dropout: float = 0.0
    target_modules: list[str] = field(
        default_factory=lambda: ["query", "value", "attention.output.dense", "output.dense"]
    )
    modules_to_save: list[str] = field(default_factory=lambda: ["classifier"])
    svd_backend: str = "krylov"
    svd_n_iter: int = 10
    svd_krylov_depth: int = 4
    svd_oversample: int = 10
    seed: int = 42
    r_init_std: float = 1e-5
    lorasb_n_samples: int = 2
    lorasb_batch_size: int | None = None
    lorasb_lr_rule: str = "warmup"

    def __post_init__(self) -> None:
        self.target_modules = list(self.target_modules)
        self.modules_to_save = list(self.modules_to_save or [])
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the bad value and what would be valid."""
        if self.method not in METHODS:
            raise ValueError(f"unknown adapter method {self.method!r}; valid: {', '.join(METHODS)}")
        if self.method != "full":
            if not isinstance(self.rank, int) or isinstance(self.rank, bool) or self.rank < 1:
                raise ValueError(f"rank must be an integer >= 1, got {self.rank!r}")
            if not self.target_modules:
                raise ValueError("target_modules is empty; name at least one module suffix, e.g. ['query', 'value']")
        if self.alpha is not None and (isinstance(self.alpha, bool) or not self.alpha > 0):
            raise ValueError(f"alpha must be > 0 (the scale is alpha / r), or None for alpha = r; got {self.alpha!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.svd_backend not in SVD_BACKENDS:
            raise ValueError(f"unknown svd_backend {self.svd_backend!r}; valid: {', '.join(SVD_BACKENDS)}")
        if self.svd_krylov_depth < 1:
            raise ValueError(f"svd_krylov_depth must be >= 1, got {self.svd_krylov_depth!r}")
        if self.svd_n_iter < 0 or self.svd_oversample < 0:
            raise ValueError(
                f"svd_n_iter and svd_oversample must be >= 0, got {self.svd_n_iter}, {self.svd_oversample}"
            )
        if self.r_init_std < 0:
            raise ValueError(f"r_init_std must be >= 0, got {self.r_init_std!r}")
        if self.lorasb_n_samples < 1:
            raise ValueError(f"lorasb_n_samples must be >= 1, got {self.lorasb_n_samples!r}")
        if self.lorasb_batch_size is not None and self.lorasb_batch_size < 1:
            raise ValueError(f"lorasb_batch_size must be >= 1 or None, got {self.lorasb_batch_size!r}")
        if self.lorasb_lr_rule not in LORASB_LR_RULES:
            raise ValueError(f"unknown lorasb_lr_rule {self.lorasb_lr_rule!r}; valid: {', '.join(LORASB_LR_RULES)}")

    @property
    def is_xs(self) -> bool:
        """True for the B R A family (``loraxs``, ``loraxs_random``, ``lorasb``)."""
        return self.method in XS_METHODS

    @property
    def scale(self) -> float:
        """``s = alpha / r``; 1 for LoRA-SB and when alpha is None."""
        if self.method == "lorasb" or self.alpha is None:
            return 1.0
        return float(self.alpha) / self.rank

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AdapterConfig:
        """Build from a dict; unknown keys are an error naming them and the valid keys."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown AdapterConfig keys {unknown}; valid: {sorted(known)}")
        return cls(**data)
