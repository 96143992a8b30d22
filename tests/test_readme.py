"""The README's library example runs as written (on the embedded MiniLM, offline) and prints what it says."""

from __future__ import annotations

import contextlib
import io
import re

from conftest import ROOT, minilm_dir


def library_example() -> str:
    """The first Python block of the README's "The library" section."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## The library") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_library_example_runs_as_written(tmp_path, monkeypatch):
    minilm_dir()  # skips when the embedded model is not installed
    code = library_example()
    printed = re.search(r"print\(count_trainable\(model\)\)  # (.*)", code).group(1)
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    assert out.getvalue().strip() == printed
    assert sorted(p.name for p in (tmp_path / "my_adapter").iterdir()) == [
        "loraxs_adapter.safetensors",
        "loraxs_config.json",
    ]
    size_kb = sum(p.stat().st_size for p in (tmp_path / "my_adapter").iterdir()) / 1000
    stated = float(re.search(r"a fingerprint of W: (\d+) KB here", code).group(1))
    assert abs(size_kb - stated) < 1.5, size_kb
    assert (tmp_path / "my_adapter_peft" / "adapter_config.json").is_file()
