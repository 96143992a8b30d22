"""Bad input: one test each, every message names the bad value and what would be valid."""

import pytest
from conftest import BERT_TARGETS, tiny_bert

from loraxs import AdapterConfig, inject_adapters


def test_unknown_method():
    with pytest.raises(
        ValueError, match=r"unknown adapter method 'dora'; valid: lora, loraxs, loraxs_random, lorasb, full"
    ):
        AdapterConfig(method="dora")


def test_rank_zero():
    with pytest.raises(ValueError, match=r"rank must be an integer >= 1, got 0"):
        AdapterConfig(method="loraxs", rank=0)


def test_rank_above_layer_dims():
    model = tiny_bert()  # hidden 32, intermediate 48
    cfg = AdapterConfig(method="loraxs", rank=33, target_modules=BERT_TARGETS)
    with pytest.raises(
        ValueError, match=r"rank 33 out of range for .*query of shape \(d_out=32, d_in=32\); valid: 1\.\.32"
    ):
        inject_adapters(model, cfg)
    assert not any(type(m).__name__ == "XSLayer" for m in model.modules()), "nothing injected on error"


def test_target_matching_nothing_lists_real_names():
    model = tiny_bert()
    cfg = AdapterConfig(method="lora", rank=4, target_modules=["q_proj"])
    with pytest.raises(
        ValueError,
        match=r"\['q_proj'\] match no nn.Linear/Conv1D of BertForSequenceClassification; "
        r"its linear layers end in: .*query",
    ):
        inject_adapters(model, cfg)


def test_modules_to_save_matching_nothing():
    cfg = AdapterConfig(method="loraxs", rank=4, target_modules=["query"], modules_to_save=["score"])
    with pytest.raises(ValueError, match=r"modules_to_save \['score'\] match no module.*classifier"):
        inject_adapters(tiny_bert(), cfg)


def test_bad_svd_backend_and_unknown_key():
    with pytest.raises(
        ValueError, match=r"unknown svd_backend 'numpy'; valid: krylov, randomized, torch, torch_lowrank, sklearn"
    ):
        AdapterConfig(svd_backend="numpy")
    with pytest.raises(ValueError, match=r"svd_krylov_depth must be >= 1, got 0"):
        AdapterConfig(svd_krylov_depth=0)
    with pytest.raises(ValueError, match=r"unknown AdapterConfig keys \['rnak'\]"):
        AdapterConfig.from_dict({"rnak": 4})


def test_double_injection_refused():
    model = tiny_bert()
    cfg = AdapterConfig(method="lora", rank=2, target_modules=["query"])
    inject_adapters(model, cfg)
    with pytest.raises(ValueError, match="already has adapters"):
        inject_adapters(model, cfg)


def test_lorasb_needs_data_and_warmup():
    from loraxs import LoraSBInit, effective_lr

    cfg = AdapterConfig(method="lorasb", rank=2, target_modules=["query"])
    with pytest.raises(
        ValueError, match=r"LoRA-SB's init needs data: pass init=lorasb_init\(model, config, batches, eta\)"
    ):
        inject_adapters(tiny_bert(), cfg)
    with pytest.raises(ValueError, match=r"a LoraSBInit is for method 'lorasb', not 'loraxs'"):
        inject_adapters(tiny_bert(), AdapterConfig(method="loraxs", rank=2), init=LoraSBInit({}, 1.0))
    with pytest.raises(ValueError, match=r"needs warmup_ratio > 0 and a positive step count, got 0.0, 100"):
        effective_lr("warmup", 1e-3, 0.0, n_train=100, batch_size=1, epochs=1)
    with pytest.raises(ValueError, match=r"needs n_train, batch_size \(eg_bs\) and epochs, got None"):
        effective_lr("warmup", 1e-3, 0.1)
    with pytest.raises(ValueError, match=r"unknown lorasb_lr_rule 'fast'; valid: warmup, warmup_optimizer_steps, lr"):
        effective_lr("fast", 1e-3)
