"""Adapter layers. One class per family of update, wrapping a frozen ``nn.Linear`` or GPT-2 ``Conv1D``.

Notation: the wrapped layer computes ``y = x Wᵀ + b`` with ``W (d_out, d_in)`` (a ``Conv1D`` stores
``Wᵀ``; :attr:`AdapterLayer.weight_t` hides that), ``x (..., d_in)``, ``s`` the scale.

- :class:`LoraLayer`:  ``y = x Wᵀ + b + s · (x Aᵀ) Bᵀ``          A ``(r, d_in)``, B ``(d_out, r)`` trainable
- :class:`XSLayer`:    ``y = x Wᵀ + b + s · ((x Aᵀ) Rᵀ) Bᵀ``     R ``(r, r)`` trainable, A, B frozen

``delta_weight() = s · B A`` (LoRA) or ``s · B R A`` (XS) is the one place the dense update is formed;
merge, unmerge and the PEFT export use it. The forward never forms it: a fused autograd function adds the
low-rank path into the base GEMM (``addmm``) and, in the backward, computes ``∂L/∂x = g W + (…) A``
in place, so the adapter costs a few thin matmuls and no extra full-size elementwise passes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

try:  # GPT-2 style layer: y = x @ weight + bias, weight (d_in, d_out)
    from transformers.pytorch_utils import Conv1D
except ImportError:  # pragma: no cover - transformers is a core dependency
    Conv1D = ()  # type: ignore[assignment,misc]

SUPPORTED_TYPES = (nn.Linear,) + ((Conv1D,) if Conv1D else ())


def layer_shape(module: nn.Module) -> tuple[int, int]:
    """``(d_out, d_in)`` of a supported layer."""
    if isinstance(module, nn.Linear):
        return module.out_features, module.in_features
    d_in, d_out = module.weight.shape  # Conv1D
    return d_out, d_in


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


class _LoraFn(torch.autograd.Function):
    """``y = x Wᵀ + b + s (xd Aᵀ) Bᵀ`` with ``xd = dropout(x)`` (``xd is None``: ``xd = x``).

    Shapes (flattened tokens N): x, xd ``(N, d_in)``; w_t = Wᵀ ``(d_in, d_out)``; A ``(r, d_in)``;
    B ``(d_out, r)``. Backward, with ``g = ∂L/∂y``: ``∂L/∂B = s gᵀ h``, ``∂L/∂A = s (g B)ᵀ xd``,
    ``∂L/∂x = g W + s (g B) A`` (the second term goes to ``xd`` when dropout is on).
    """

    @staticmethod
    def forward(ctx, x, xd, w_t, bias, A, B, scale):
        xa = x if xd is None else xd
        h = xa @ A.t()  # (N, r)
        y = torch.addmm(bias, x, w_t) if bias is not None else x @ w_t
        y.addmm_(h, B.t(), alpha=scale)
        ctx.save_for_backward(xa, h, w_t, A, B)
        ctx.scale, ctx.split = scale, xd is not None
        return y

    @staticmethod
    def backward(ctx, g):
        xa, h, w_t, A, B = ctx.saved_tensors
        s = ctx.scale
        gB = g @ B  # (N, r)
        grad_x = grad_xd = grad_A = grad_B = None
        if ctx.needs_input_grad[5]:
            grad_B = (g.t() @ h).mul_(s)
        if ctx.needs_input_grad[4]:
            grad_A = (gB.t() @ xa).mul_(s)
        if ctx.needs_input_grad[0]:
            grad_x = g @ w_t.t()
            if not ctx.split:
                grad_x.addmm_(gB, A, alpha=s)
        if ctx.split and ctx.needs_input_grad[1]:
            grad_xd = (gB @ A).mul_(s)
        return grad_x, grad_xd, None, None, grad_A, grad_B, None


class _XSFn(torch.autograd.Function):
    """``y = x Wᵀ + b + ((xd Aᵀ) (sR)ᵀ) Bᵀ``; only ``sR = s·R`` (r, r) receives a gradient.

    Backward, with ``h = xd Aᵀ (N, r)`` and ``gB = g B (N, r)``: ``∂L/∂(sR) = gBᵀ h``,
    ``∂L/∂x = g W + (gB sR) A``. Only ``h`` (N × r) is saved, not ``x``.
    """

    @staticmethod
    def forward(ctx, x, xd, w_t, bias, A, sR, B):
        h = (x if xd is None else xd) @ A.t()  # (N, r)
        y = torch.addmm(bias, x, w_t) if bias is not None else x @ w_t
        y.addmm_(h @ sR.t(), B.t())
        ctx.save_for_backward(h, w_t, A, sR, B)
        ctx.split = xd is not None
        return y

    @staticmethod
    def backward(ctx, g):
        h, w_t, A, sR, B = ctx.saved_tensors
        gB = g @ B  # (N, r)
        grad_x = grad_xd = grad_sR = None
        if ctx.needs_input_grad[5]:
            grad_sR = gB.t() @ h
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            gh = gB @ sR  # (N, r) = ∂L/∂h
            if ctx.needs_input_grad[0]:
                grad_x = g @ w_t.t()
                if not ctx.split:
                    grad_x.addmm_(gh, A)
            if ctx.split and ctx.needs_input_grad[1]:
                grad_xd = gh @ A
        return grad_x, grad_xd, None, None, None, grad_sR, None


class AdapterLayer(nn.Module):
    """Common part: holds the frozen ``base_layer``, the scale, dropout, and the merged flag."""

    def __init__(self, base_layer: nn.Module, rank: int, scale: float, dropout: float = 0.0) -> None:
        super().__init__()
        if not isinstance(base_layer, SUPPORTED_TYPES):
            raise TypeError(f"cannot wrap {type(base_layer).__name__}; supported: nn.Linear, transformers Conv1D")
        self.base_layer = base_layer
        self.d_out, self.d_in = layer_shape(base_layer)
        if not 1 <= rank <= min(self.d_in, self.d_out):
            raise ValueError(
                f"rank {rank} out of range for a layer of shape (d_out={self.d_out}, d_in={self.d_in}); "
                f"valid: 1..{min(self.d_in, self.d_out)}"
            )
        self.rank = rank
        self.scale = float(scale)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        self.merged = False
        self.fan_in_fan_out = not isinstance(base_layer, nn.Linear)
        for p in base_layer.parameters():
            p.requires_grad_(False)

    @property
    def weight(self) -> torch.Tensor:
        """The base weight as ``W (d_out, d_in)`` (a view for ``Conv1D``)."""
        w = self.base_layer.weight
        return w.t() if self.fan_in_fan_out else w

    @property
    def weight_t(self) -> torch.Tensor:
        """``Wᵀ (d_in, d_out)``, the right operand of ``x @ Wᵀ``."""
        w = self.base_layer.weight
        return w if self.fan_in_fan_out else w.t()

    def lora_pair(self) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover - abstract
        """The update as a plain LoRA with scale 1: ``(B' (d_out, r), A (r, d_in))``, float32."""
        raise NotImplementedError

    def delta_weight(self) -> torch.Tensor:
        """``ΔW = B' A`` from :meth:`lora_pair`, shape ``(d_out, d_in)``, float32."""
        b, a = self.lora_pair()
        return b @ a

    @torch.no_grad()
    def merge(self) -> None:
        """``W ← W + ΔW``; a second call is a no-op."""
        if self.merged:
            return
        w = self.weight
        w.copy_((w.float() + self.delta_weight().float()).to(w.dtype))
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """``W ← W − ΔW``; a no-op when not merged."""
        if not self.merged:
            return
        w = self.weight
        w.copy_((w.float() - self.delta_weight().float()).to(w.dtype))
        self.merged = False

    def _operands(self, x: torch.Tensor):
        """Flatten x to (N, d_in) and cast the frozen operands to the compute dtype."""
        dtype = _compute_dtype(x)
        x2 = x.reshape(-1, self.d_in).to(dtype)
        xd = None
        if self.dropout is not None and self.training:
            xd = self.dropout(x2)
        bias = self.base_layer.bias
        return x2, xd, self.weight_t.to(dtype), None if bias is None else bias.to(dtype), dtype

    def extra_repr(self) -> str:
        return f"d_in={self.d_in}, d_out={self.d_out}, rank={self.rank}, scale={self.scale:g}, merged={self.merged}"


class LoraLayer(AdapterLayer):
    """LoRA: ``y = x Wᵀ + b + s · (x Aᵀ) Bᵀ``, A ``(r, d_in)`` and B ``(d_out, r)`` trainable."""

    def __init__(self, base_layer: nn.Module, rank: int, scale: float, dropout: float = 0.0) -> None:
        super().__init__(base_layer, rank, scale, dropout)
        kw = dict(dtype=torch.float32, device=base_layer.weight.device)  # trained in fp32 whatever W's dtype
        self.lora_A = nn.Parameter(torch.zeros(rank, self.d_in, **kw))
        self.lora_B = nn.Parameter(torch.zeros(self.d_out, rank, **kw))

    def lora_pair(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``ΔW = s · B A`` as ``(s·B (d_out, r), A (r, d_in))``, float32."""
        return self.scale * self.lora_B.float(), self.lora_A.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self.base_layer(x)
        x2, xd, w_t, bias, dt = self._operands(x)
        y = _LoraFn.apply(x2, xd, w_t, bias, self.lora_A.to(dt), self.lora_B.to(dt), self.scale)
        return y.view(*x.shape[:-1], self.d_out)


class XSLayer(AdapterLayer):
    """LoRA-XS / LoRA-SB: ``y = x Wᵀ + b + s · ((x Aᵀ) Rᵀ) Bᵀ``; only R ``(r, r)`` trains.

    A ``(r, d_in)`` and B ``(d_out, r)`` are frozen parameters (``requires_grad=False``), so data-parallel
    wrappers neither reduce nor re-broadcast them. A, B and R are float32 whatever the base dtype (as PEFT and
    the official code keep adapter weights): in bf16 ``1 + 1e-3 == 1``, so a bf16 R would not train. The
    forward casts them to the compute dtype.
    """

    def __init__(self, base_layer: nn.Module, rank: int, scale: float, dropout: float = 0.0) -> None:
        super().__init__(base_layer, rank, scale, dropout)
        kw = dict(dtype=torch.float32, device=base_layer.weight.device)  # R trains in fp32 whatever W's dtype
        self.lora_A = nn.Parameter(torch.zeros(rank, self.d_in, **kw), requires_grad=False)
        self.lora_B = nn.Parameter(torch.zeros(self.d_out, rank, **kw), requires_grad=False)
        self.lora_R = nn.Parameter(torch.zeros(rank, rank, **kw))

    def lora_pair(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``ΔW = s · B R A`` as a plain rank-r LoRA with scale 1: ``(s·B R (d_out, r), A (r, d_in))``."""
        return self.scale * (self.lora_B.float() @ self.lora_R.float()), self.lora_A.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self.base_layer(x)
        x2, xd, w_t, bias, dt = self._operands(x)
        sR = self.lora_R.to(dt) * self.scale if self.scale != 1.0 else self.lora_R.to(dt)
        y = _XSFn.apply(x2, xd, w_t, bias, self.lora_A.to(dt), sR, self.lora_B.to(dt))
        return y.view(*x.shape[:-1], self.d_out)


def reference_forward(layer: AdapterLayer, x: torch.Tensor) -> torch.Tensor:
    """Unfused ``x (W + ΔW)ᵀ + b`` in the layer's dtype, for tests and debugging."""
    w = layer.weight.float() + (0 if layer.merged else layer.delta_weight())
    b = layer.base_layer.bias
    return F.linear(x.float(), w, None if b is None else b.float()).to(x.dtype)
