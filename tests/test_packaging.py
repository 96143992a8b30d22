"""The package declares what it imports, has one version source, and ships py.typed and its data files."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

STDLIB = set(sys.stdlib_module_names)


def imported_top_level(package: Path) -> set[str]:
    """Top-level names of every absolute import in ``package``'s modules (lazy imports inside functions too)."""
    names = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - STDLIB - {"loraxs", "__future__"}


def declared(extras: tuple[str, ...]) -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for e in extras:
        reqs += project["optional-dependencies"][e]
    return {re.split(r"[<>=!~ \[;]", r, maxsplit=1)[0].lower().replace("_", "-") for r in reqs}


def test_every_import_of_the_library_is_a_declared_dependency():
    dists = importlib.metadata.packages_distributions()
    needed = {}
    for module in imported_top_level(ROOT / "loraxs"):
        if module == "vllm":  # loraxs/tasks/vllm_backend.py: the [vllm] extra, its own environment
            continue
        assert module in dists, f"{module} is imported by loraxs but installed by no distribution here"
        needed[module] = {d.lower().replace("_", "-") for d in dists[module]}
    have = declared(("train",))
    missing = {m: d for m, d in needed.items() if not d & have}
    assert not missing, f"imported but not declared in pyproject (dependencies or [train]): {missing}"
    assert "vllm" in declared(("vllm",))


def test_the_core_library_needs_only_the_core_dependencies():
    """``pip install loraxs`` (no extras): the adapter modules import nothing from the [train] extra at top level."""
    code = (
        "import sys, loraxs\n"
        "from loraxs import AdapterConfig, inject_adapters, save_adapter, load_adapter, export_peft_lora, lorasb_init\n"
        "heavy = [m for m in ('hydra', 'omegaconf', 'accelerate', 'datasets', 'wandb', 'sklearn', 'scipy',"
        " 'math_verify', 'matplotlib') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.stdout.strip() == "[]", p.stdout + p.stderr[-2000:]


def test_the_wheel_has_one_version_py_typed_and_its_data(tmp_path):
    import shutil

    import loraxs

    src = tmp_path / "src"  # a copy: setuptools writes build/ beside the sources, never into the repository
    shutil.copytree(ROOT / "loraxs", src / "loraxs", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    p = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=src,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    (wheel,) = tmp_path.glob("loraxs-*.whl")
    assert wheel.name.startswith(f"loraxs-{loraxs.__version__}-")
    names = set(zipfile.ZipFile(wheel).namelist())
    for f in ("loraxs/py.typed", "loraxs/report/tables.yaml", "loraxs/report/printed_figures.csv"):
        assert f in names, f
    assert any(n.endswith("licenses/LICENSE") for n in names), sorted(n for n in names if "dist-info" in n)
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert f"Version: {loraxs.__version__}" in metadata and "Provides-Extra: train" in metadata
    assert "Requires-Dist: transformers>=4.56" in metadata


def test_the_accelerate_config_files_load():
    """scripts/accelerate/*.yaml are valid Accelerate config files (they are run on GPUs only)."""
    from accelerate.commands.config.config_args import load_config_from_file

    ddp = load_config_from_file(str(ROOT / "scripts" / "accelerate" / "ddp.yaml"))
    fsdp = load_config_from_file(str(ROOT / "scripts" / "accelerate" / "fsdp.yaml"))
    assert str(ddp.distributed_type).endswith("MULTI_GPU") and str(fsdp.distributed_type).endswith("FSDP")
    assert fsdp.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"
    assert fsdp.fsdp_config["fsdp_version"] == 2  # tests/test_fsdp.py runs this fsdp_config on CPU processes
