"""Base-model loading: the converted-GGUF cache under concurrent runs."""


def test_gguf_conversion_that_loses_the_race_uses_the_winners_folder(tmp_path, tiny_llama_dir, monkeypatch):
    """Another run renames its converted folder into place while this one converts: this run's rename fails,
    it discards its copy and returns the winner's folder (once: OSError 'Directory not empty')."""
    import shutil

    import transformers

    from loraxs.models import converted_gguf

    (tiny_llama_dir / "tiny.gguf").write_bytes(b"GGUF")  # only its presence is checked before loading
    real_model, real_tok = transformers.AutoModelForCausalLM.from_pretrained, transformers.AutoTokenizer.from_pretrained
    cache = tmp_path / "cache"
    target = cache / "tiny"

    def tokenizer(source, gguf_file=None, **kw):  # the other run finishes while this one loads
        shutil.copytree(tiny_llama_dir, target)
        (target / "winner").write_text("the other run's copy")
        return real_tok(source, **kw)

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", tokenizer)
    monkeypatch.setattr(
        transformers.AutoModelForCausalLM,
        "from_pretrained",
        lambda source, gguf_file=None, **kw: real_model(source, **kw),
    )
    assert converted_gguf(str(tiny_llama_dir), "tiny.gguf", cache, "tiny") == target
    assert (target / "winner").is_file() and sorted(p.name for p in cache.iterdir()) == ["tiny"]
