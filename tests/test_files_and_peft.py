"""Adapter folders: exact round trips, the compact size bound, refusals, and the PEFT export."""

import copy
import json

import pytest
import torch
from conftest import BERT_TARGETS, bert_batch, lm_batch, tiny_bert, tiny_gpt2

from loraxs import (
    AdapterConfig,
    adapter_layers,
    export_peft_lora,
    inject_adapters,
    load_adapter,
    lorasb_init,
    save_adapter,
)


def trained(method, seed=0, model=None, **cfg_kw):
    """A tiny model with a non-trivial adapter and head (random, as if trained)."""
    model = model if model is not None else tiny_bert(seed=seed)
    cfg = AdapterConfig(method=method, rank=4, target_modules=BERT_TARGETS, **cfg_kw)
    extra = dict(init=lorasb_init(model, cfg, [bert_batch(4)], eta=1e-2)) if method == "lorasb" else {}
    inject_adapters(model, cfg, **extra)
    torch.manual_seed(123)
    with torch.no_grad():
        for layer in adapter_layers(model).values():
            for p in [layer.lora_R] if method != "lora" else [layer.lora_A, layer.lora_B]:
                p.normal_(0, 0.1)
        if hasattr(model, "classifier"):
            for p in model.classifier.parameters():
                p.normal_(0, 0.1)
    return model


@pytest.mark.parametrize(
    "method,compact,backend",
    [
        ("lora", False, "torch"),
        ("loraxs", False, "torch"),
        ("loraxs", True, "torch"),
        ("loraxs", True, "krylov"),
        ("loraxs", True, "randomized"),
        ("loraxs_random", True, "torch"),
        ("lorasb", False, "torch"),
        ("full", False, "torch"),
    ],
)
def test_save_load_reproduces_outputs_exactly(tmp_path, method, compact, backend):
    model = trained(method, svd_backend=backend)
    ids = bert_batch(3)["input_ids"]
    out = model(input_ids=ids).logits
    save_adapter(model, tmp_path / "a", compact=compact, base_model="tiny")
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == ["loraxs_adapter.safetensors", "loraxs_config.json"]
    fresh = tiny_bert(seed=0)
    load_adapter(fresh, tmp_path / "a")
    assert torch.equal(fresh(input_ids=ids).logits, out)
    record = json.loads((tmp_path / "a" / "loraxs_config.json").read_text())
    assert record["config"]["method"] == method and record["metadata"] == {"base_model": "tiny"}


def test_compact_file_size_bound(tmp_path):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=64,
        hidden_size=64,
        num_hidden_layers=6,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=32,
    )
    r = 8
    model = BertForSequenceClassification(cfg)
    inject_adapters(model, AdapterConfig(method="loraxs", rank=r, target_modules=BERT_TARGETS))
    save_adapter(model, tmp_path / "c", compact=True)
    save_adapter(model, tmp_path / "f", compact=False)
    n_modules = len(adapter_layers(model))
    head_bytes = sum(p.numel() * 4 for p in model.classifier.parameters())
    size = sum(p.stat().st_size for p in (tmp_path / "c").iterdir())
    assert n_modules == 24
    assert size <= n_modules * r * r * 4 + 10_240 + head_bytes, size
    assert size < sum(p.stat().st_size for p in (tmp_path / "f").iterdir()) / 4


def test_compact_refused_on_other_base_weights(tmp_path):
    save_adapter(trained("loraxs", seed=0), tmp_path / "a", compact=True)
    with pytest.raises(ValueError, match=r"compact LoRA-XS adapter for other base weights"):
        load_adapter(tiny_bert(seed=1), tmp_path / "a")


def test_compact_refused_for_lorasb_and_lora(tmp_path):
    with pytest.raises(ValueError, match=r"compact=True is for loraxs, loraxs_random.*lorasb must be saved"):
        save_adapter(trained("lorasb"), tmp_path / "x", compact=True)


def test_truncated_file_fails_clearly(tmp_path):
    save_adapter(trained("loraxs"), tmp_path / "a")
    path = tmp_path / "a" / "loraxs_adapter.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"loraxs_adapter.safetensors does not match loraxs_config.json .*truncated"):
        load_adapter(tiny_bert(seed=0), tmp_path / "a")


def test_mismatched_files_fail_clearly(tmp_path):
    save_adapter(trained("loraxs"), tmp_path / "a")
    save_adapter(trained("loraxs", seed=5), tmp_path / "b")
    (tmp_path / "a" / "loraxs_adapter.safetensors").write_bytes(
        (tmp_path / "b" / "loraxs_adapter.safetensors").read_bytes()
    )
    with pytest.raises(ValueError, match=r"does not match loraxs_config\.json"):
        load_adapter(tiny_bert(seed=0), tmp_path / "a")


def test_wrong_architecture_and_missing_folder(tmp_path):
    save_adapter(trained("lora"), tmp_path / "a")
    with pytest.raises(ValueError, match=r"saved for 8 adapter modules that differ"):
        load_adapter(tiny_bert(seed=0, num_hidden_layers=1), tmp_path / "a")
    with pytest.raises(ValueError, match=r"no adapter at .*nothing: not a folder"):
        load_adapter(tiny_bert(), tmp_path / "nothing")


def test_save_is_atomic_on_failure(tmp_path, monkeypatch):
    model = trained("loraxs")
    save_adapter(model, tmp_path / "a")
    before = {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()}
    import loraxs.io as io

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(io, "save_file", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        save_adapter(trained("loraxs", seed=3), tmp_path / "a")
    assert {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()} == before


@pytest.mark.parametrize("method", ["lora", "loraxs", "loraxs_random", "lorasb"])
def test_peft_round_trip(tmp_path, method):
    peft = pytest.importorskip("peft")
    model = trained(method)
    base = tiny_bert(seed=0)
    ids = bert_batch(3)["input_ids"]
    out = model(input_ids=ids).logits
    export_peft_lora(model, tmp_path / "p", task_type="SEQ_CLS")
    pm = peft.PeftModel.from_pretrained(base, tmp_path / "p").eval()
    torch.testing.assert_close(pm(input_ids=ids).logits, out, rtol=1e-5, atol=1e-6)


def test_peft_round_trip_gpt2_conv1d(tmp_path):
    peft = pytest.importorskip("peft")
    model = tiny_gpt2()
    ref = copy.deepcopy(model)
    inject_adapters(model, AdapterConfig(method="loraxs", rank=4, target_modules=["c_attn"], modules_to_save=[]))
    with torch.no_grad():
        for layer in adapter_layers(model).values():
            layer.lora_R.normal_(0, 0.1)
    ids = lm_batch(2)["input_ids"]
    export_peft_lora(model, tmp_path / "p", task_type="CAUSAL_LM")
    pm = peft.PeftModel.from_pretrained(ref, tmp_path / "p").eval()
    torch.testing.assert_close(pm(input_ids=ids).logits, model(input_ids=ids).logits, rtol=1e-5, atol=1e-5)


def test_atomic_files_get_the_users_normal_permissions(tmp_path):
    import os

    from loraxs.io import write_json_atomic

    old = os.umask(0o027)
    try:
        save_adapter(trained("loraxs"), tmp_path / "a")
        write_json_atomic(tmp_path / "m.json", {"a": 1})
    finally:
        os.umask(old)
    for f in (
        tmp_path / "a" / "loraxs_config.json",
        tmp_path / "a" / "loraxs_adapter.safetensors",
        tmp_path / "m.json",
    ):
        assert f.stat().st_mode & 0o777 == 0o640, f  # 0o666 & ~umask, not mkstemp's 0o600


def test_native_folder_is_not_mistaken_for_peft_and_legacy_names_still_load(tmp_path):
    """Our folder has its own file names: PEFT finds no config of its own there (instead of a KeyError on our
    schema). A folder written before the rename (PEFT's names, our schema) still loads."""
    peft = pytest.importorskip("peft")
    model = trained("loraxs")
    ids = bert_batch(3)["input_ids"]
    out = model(input_ids=ids).logits
    save_adapter(model, tmp_path / "a")
    with pytest.raises(ValueError, match=r"adapter_config\.json"):
        peft.PeftConfig.from_pretrained(str(tmp_path / "a"))
    (tmp_path / "a" / "loraxs_config.json").rename(tmp_path / "a" / "adapter_config.json")
    (tmp_path / "a" / "loraxs_adapter.safetensors").rename(tmp_path / "a" / "adapter_model.safetensors")
    fresh = tiny_bert(seed=0)
    load_adapter(fresh, tmp_path / "a")
    assert torch.equal(fresh(input_ids=ids).logits, out)


def test_the_base_fingerprint_is_hashed_once_per_model_and_again_after_an_in_place_change(tmp_path, monkeypatch):
    import hashlib
    import types

    import loraxs.io as io
    from loraxs import merge_adapters, unmerge_adapters
    from loraxs.io import base_fingerprint

    hashed = []  # bytes hashed by loraxs.io, in weight-sized pieces

    class Counting:
        def __init__(self, *args):
            self.h = hashlib.sha256(*args)

        def update(self, data):
            if len(data) > 1024:
                hashed.append(len(data))
            self.h.update(data)

        def hexdigest(self):
            return self.h.hexdigest()

    monkeypatch.setattr(io, "hashlib", types.SimpleNamespace(sha256=Counting))
    model = trained("loraxs")
    n_weights = len(adapter_layers(model))
    first = base_fingerprint(model)
    save_adapter(model, tmp_path / "best", compact=True)
    save_adapter(model, tmp_path / "best", compact=True)
    save_adapter(model, tmp_path / "final", compact=True)
    load_adapter(model, tmp_path / "final")
    assert len(hashed) == n_weights  # one pass over the base weights for four uses
    assert (
        first
        == hashlib.sha256(
            b"".join(
                n.encode() + lay.weight.detach().float().numpy().tobytes() for n, lay in adapter_layers(model).items()
            )
        ).hexdigest()
    )  # the definition the files record
    merge_adapters(model)
    with pytest.raises(ValueError, match="is merged"):
        base_fingerprint(model)
    unmerge_adapters(model)
    base_fingerprint(model)
    assert len(hashed) == 2 * n_weights  # merged and unmerged: W changed in place, hashed again
    with torch.no_grad():
        next(iter(adapter_layers(model).values())).weight.add_(1.0)
    assert base_fingerprint(model) != first and len(hashed) == 3 * n_weights
