"""Optimizer steps touch only trainable tensors; merge/unmerge are exact; merged outputs agree."""

import copy

import pytest
import torch
from conftest import BERT_TARGETS, bert_batch, lm_batch, tiny_bert, tiny_gpt2

from loraxs import AdapterConfig, adapter_layers, inject_adapters, lorasb_init, merge_adapters, unmerge_adapters


def _inject(model, method, **kw):
    cfg = AdapterConfig(method=method, rank=4, target_modules=BERT_TARGETS, **kw)
    extra = {}
    if method == "lorasb":
        extra = dict(init=lorasb_init(model, cfg, [bert_batch(4)], eta=1e-2))
    return inject_adapters(model, cfg, **extra)


@pytest.mark.parametrize("method", ["lora", "loraxs", "loraxs_random", "lorasb", "full"])
def test_only_trainable_tensors_change(method):
    model = _inject(tiny_bert(), method).train()
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for step in range(3):
        model(**bert_batch(4, seed=step)).loss.backward()
        opt.step()
        opt.zero_grad()
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == trainable, (sorted(changed ^ trainable))[:5]
    if method in ("loraxs", "lorasb"):
        assert all(k.endswith("lora_R") or k.startswith("classifier") for k in changed)


@pytest.mark.parametrize("method", ["lora", "loraxs", "lorasb"])
def test_merge_unmerge_exact_and_outputs_agree(method):
    model = _inject(tiny_bert(), method)
    with torch.no_grad():  # make the update non-trivial
        for layer in adapter_layers(model).values():
            (layer.lora_B if method == "lora" else layer.lora_R).normal_(0, 0.1)
    ids = bert_batch(3)["input_ids"]
    weights = {n: l.base_layer.weight.clone() for n, l in adapter_layers(model).items()}
    out = model(input_ids=ids).logits
    merge_adapters(model)
    merged_w = {n: l.base_layer.weight.clone() for n, l in adapter_layers(model).items()}
    merge_adapters(model)  # twice: a no-op
    for n, l in adapter_layers(model).items():
        assert torch.equal(l.base_layer.weight, merged_w[n])
        assert not torch.equal(merged_w[n], weights[n])
    torch.testing.assert_close(model(input_ids=ids).logits, out, rtol=1e-5, atol=1e-6)
    unmerge_adapters(model)
    for n, l in adapter_layers(model).items():
        torch.testing.assert_close(l.base_layer.weight, weights[n], rtol=0, atol=1e-6)
    torch.testing.assert_close(model(input_ids=ids).logits, out, rtol=1e-5, atol=1e-6)


def test_merge_conv1d_gpt2():
    model = tiny_gpt2()
    inject_adapters(
        model, AdapterConfig(method="loraxs", rank=4, target_modules=["c_attn", "c_fc"], modules_to_save=[])
    )
    with torch.no_grad():
        for layer in adapter_layers(model).values():
            layer.lora_R.normal_(0, 0.1)
    ids = lm_batch(2)["input_ids"]
    out = model(input_ids=ids).logits
    ref = copy.deepcopy(model)
    merge_adapters(model)
    torch.testing.assert_close(model(input_ids=ids).logits, out, rtol=1e-5, atol=1e-5)
    unmerge_adapters(model)
    for (_n, a), (_, b) in zip(model.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
