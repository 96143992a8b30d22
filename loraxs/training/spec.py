"""The resolved run spec: the composed Hydra config turned once into typed objects.

``build_spec(cfg)`` runs right after composition, in milliseconds and before any model or data is loaded. Every
YAML key is a field of one of the dataclasses below, with the same name (the ``task`` group also holds the
recipe keys of :class:`OptimSpec`; the ``trainer`` group its optimizer keys); an unknown key, a wrong type or an
out-of-range value raises :class:`ConfigError` with one line naming the key, the bad value and what is valid.
The loop, the tasks, the model loader and ``experiments/eval.py`` read these objects, never the raw config.

The learning-rate rule (written in ``configs/train.yaml`` too): ``task.lr`` is the lr of everything that trains
except the head, ``task.head_lr`` the head's (``null`` = ``task.lr``). Task files hold their paper's recipe, an
adapter file may set its method's default (``adapter=lora``: 4e-4, ``adapter=full``: 2e-5), an experiment file
sets its paper's value, and a command-line override wins over all of them.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from ..config import AdapterConfig
from .errors import ConfigError

FAMILIES = ("glue", "math", "commonsense", "lm", "superglue", "squad")


def _f(
    default: Any = dataclasses.MISSING,
    *,
    choices: tuple = (),
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
) -> Any:
    """A dataclass field with the checks :func:`read` applies: allowed values, or a range."""
    return field(default=default, metadata={"choices": choices, "min": lo, "max": hi, "min_open": lo_open})


# ------------------------------------------------------------------ the groups
@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """``configs/model/*.yaml``: which base model and what the adapters target on it."""

    name: str
    name_or_path: str
    kind: str = _f(choices=("encoder", "decoder"))  # encoder: GLUE, SuperGLUE, SQuAD; decoder: math, commonsense, lm
    gguf_file: str | None = None
    dtype: str = _f(choices=("float32", "bfloat16", "float16"))
    max_rank: int | None = _f(None, lo=1)
    target_modules: list[str] = field(default_factory=list)
    modules_to_save: list[str] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class OptimSpec:
    """Optimisation recipe. From ``task``: epochs, batch_size, lr, head_lr, warmup_*, scheduler; from ``trainer``:
    grad_accum, weight_decay, max_grad_norm, adam_betas, adam_eps, max_steps. AdamW with two parameter groups
    (adapter, head), a schedule stepped once per optimizer step."""

    epochs: int = _f(lo=1)
    batch_size: int = _f(lo=1)
    lr: float = _f(lo=0, lo_open=True)
    head_lr: float | None = _f(None, lo=0, lo_open=True)  # null: = lr
    warmup_ratio: float = _f(0.0, lo=0, hi=1)
    warmup_steps: int | None = _f(None, lo=0)  # wins over warmup_ratio
    warmup_rounding: str = _f("ceil", choices=("floor", "ceil"))  # floor = int(), as the official GLUE scripts
    scheduler: str = _f(choices=("linear", "cosine", "constant"))
    grad_accum: int = _f(1, lo=1)
    weight_decay: float = _f(0.0, lo=0)
    max_grad_norm: float | None = _f(None, lo=0, lo_open=True)  # null: no clipping
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    adam_eps: float = _f(1e-8, lo=0, lo_open=True)
    decay_biases_and_norms: bool = True  # false: no weight decay on biases and LayerNorm weights (HF Trainer)
    max_steps: int | None = _f(None, lo=0)  # 0: no training (init + evaluation)

    @property
    def head_lr_value(self) -> float:
        return self.lr if self.head_lr is None else self.head_lr

    def warmup(self, total_steps: int) -> int:
        """Warm-up steps: ``warmup_steps`` when set, else ``warmup_ratio · total_steps`` rounded as configured."""
        if self.warmup_steps is not None:
            return self.warmup_steps
        x = self.warmup_ratio * total_steps
        return int(x) if self.warmup_rounding == "floor" else -int(-x // 1)


TASK_OPTIM_KEYS = (
    "epochs",
    "batch_size",
    "lr",
    "head_lr",
    "warmup_ratio",
    "warmup_steps",
    "warmup_rounding",
    "scheduler",
)
TRAINER_OPTIM_KEYS = (
    "grad_accum",
    "weight_decay",
    "decay_biases_and_norms",
    "max_grad_norm",
    "adam_betas",
    "adam_eps",
    "max_steps",
)


@dataclass(frozen=True, kw_only=True)
class TaskSpec:
    """Keys every task family has (``configs/task/*.yaml``), besides the recipe keys of :class:`OptimSpec`."""

    name: str
    family: str = _f(choices=FAMILIES)
    max_length: int = _f(lo=1)
    max_train_samples: int | None = _f(None, lo=1)
    max_eval_samples: int | None = _f(None, lo=1)
    main_metric: str
    # what the run reports: best_epoch (GLUE: best dev epoch, the papers' rule), final (the last model),
    # val_loss (the checkpoint with the lowest loss on held-out training examples, then one evaluation)
    selection: str = _f(choices=("best_epoch", "final", "val_loss"))
    eval_every_epoch: bool  # false: evaluate once, after training (the LLM tasks' test sets)
    # the trained head modules when this task's model head differs from the sequence classifier the model file
    # names (SQuAD's span head: [qa_outputs]); null: model.modules_to_save
    head_modules: list[str] | None = None


@dataclass(frozen=True, kw_only=True)
class GlueTaskSpec(TaskSpec):
    """GLUE from the Hub (``hf_path``/``hf_name``) or a local folder in the GLUE tsv layout (``data_dir``)."""

    hf_path: str | None = None
    hf_name: str | None = None
    data_dir: str | None = None
    folder: str
    layout: str
    text_fields: list[str]
    num_labels: int = _f(lo=1)
    metrics: list[str]
    eval_splits: dict[str, str]


@dataclass(frozen=True, kw_only=True)
class EvalSetSpec:
    """One generation benchmark of a math task: Hub (``hf_path``, ``hf_name``: a config or a list of configs whose
    splits are concatenated) or a local JSON/JSONL ``path``; graded as ``kind``."""

    kind: str = _f(choices=("gsm8k", "math"))
    hf_path: str | None = None
    hf_name: str | list[str] | None = None
    split: str = "test"
    path: str | None = None
    max_new_tokens: int = _f(lo=1)


@dataclass(frozen=True, kw_only=True)
class GenerationTaskSpec(TaskSpec):
    """Keys shared by the instruction-tuning families: prompt, decoding, held-out validation."""

    train_on_inputs: bool = False
    eval_batch_size: int = _f(8, lo=1)
    num_beams: int = _f(1, lo=1)
    stop: list[str] = field(
        default_factory=list
    )  # generation ends at the first of these strings (not kept in the text)
    val_set_size: int = _f(0, lo=0)  # training examples held out for selection=val_loss
    val_every: int = _f(40, lo=1)  # optimizer steps between validation-loss evaluations


@dataclass(frozen=True, kw_only=True)
class MathTaskSpec(GenerationTaskSpec):
    """MetaMathQA (Hub ``hf_path`` + ``train_split``, or ``train_path``) → GSM8K / MATH (``eval_sets``)."""

    hf_path: str | None = None
    train_split: str = "train"
    train_path: str | None = None
    grader: str = _f(choices=("official", "lenient"))
    eval_sets: dict[str, EvalSetSpec]


@dataclass(frozen=True, kw_only=True)
class CommonsenseTaskSpec(GenerationTaskSpec):
    """Commonsense170K (``train_path``) → the eight benchmarks under ``test_dir``."""

    train_path: str
    test_dir: str
    benchmarks: list[str]
    max_new_tokens: int = _f(lo=1)
    template: str = _f(choices=("clean", "lorasb", "loraxs"))


@dataclass(frozen=True, kw_only=True)
class LmTaskSpec(TaskSpec):
    """Causal-LM fine-tuning on contiguous ``max_length``-token blocks of a text; evaluated on a whole text by a
    sliding window (``eval_context`` tokens, advancing ``stride``): token perplexity, word perplexity, bits per
    character (or byte). Text from local files (``train_path``, ``eval_path``; or one ``data_file`` cut at
    ``split_chars``) or the Hub (``hf_path``/``hf_name``, splits ``train_split``/``eval_split``)."""

    hf_path: str | None = None
    hf_name: str | None = None
    train_split: str = "train"
    eval_split: str = "test"
    train_path: str | None = None
    eval_path: str | None = None
    data_file: str | None = None  # one file holding train + valid + test (enwik8, text8), cut at split_chars
    split_chars: list[int] | None = None  # [train, valid, test] lengths (enwik8 / text8: 90M, 5M, 5M)
    eval_context: int | None = _f(None, lo=2)  # the window; null = max_length
    stride: int = _f(lo=1)  # tokens the window advances; = eval_context gives non-overlapping windows
    bpc_unit: str = _f("char", choices=("char", "byte"))  # what bits per character divides by (enwik8: bytes)
    max_eval_chars: int | None = _f(None, lo=1)  # evaluate the first N characters of the eval text (null = all)
    max_train_chars: int | None = _f(None, lo=1)  # train on the first N characters of the train text
    eval_batch_size: int = _f(8, lo=1)


@dataclass(frozen=True, kw_only=True)
class SuperGlueTaskSpec(TaskSpec):
    """SuperGLUE from local JSONL (``data_dir``/<folder>/{train,val}.jsonl, the canonical files) or the Hub
    (``hf_path``/``hf_name``); ``layout`` says how a record becomes model inputs (``loraxs.tasks.superglue``):
    a text pair for a sequence classifier, COPA's two alternatives for a multiple-choice head, MultiRC one binary
    pair per answer option."""

    hf_path: str | None = None
    hf_name: str | None = None
    data_dir: str | None = None
    folder: str
    layout: str = _f(choices=("boolq", "cb", "copa", "multirc", "rte", "wic", "wsc"))
    num_labels: int = _f(lo=1)
    metrics: list[str]
    train_split: str = "train"  # local: <split>.jsonl; Hub: the split name
    eval_split: str = "val"
    hub_eval_split: str = "validation"


@dataclass(frozen=True, kw_only=True)
class SquadTaskSpec(TaskSpec):
    """SQuAD 1.1 / 2.0 with a span head (``AutoModelForQuestionAnswering``): contexts longer than ``max_length``
    split into windows overlapping by ``doc_stride`` tokens; an answer is the best start ≤ end within
    ``max_answer_length`` tokens (and, for 2.0, the null answer when its score beats the best span's by more than
    ``null_threshold``); EM / F1 with the official scripts' normalisation."""

    version: str | float  # 1.1 or 2.0 (a number on the command line is read as the same version)
    hf_path: str | None = None
    train_split: str = "train"
    eval_split: str = "validation"
    train_path: str | None = None  # a local file in the official JSON format
    eval_path: str | None = None
    holdout_articles: int | None = _f(None, lo=1)  # stand-in: evaluate the first N articles of eval_path and
    #                                                train on the others (train_path = eval_path)
    doc_stride: int = _f(lo=1)
    max_answer_length: int = _f(lo=1)
    n_best: int = _f(20, lo=1)
    null_threshold: float = 0.0

    def __post_init__(self) -> None:
        version = f"{self.version:.1f}" if isinstance(self.version, float) else str(self.version)
        if version not in ("1.1", "2.0"):
            raise ConfigError(f"task.version={self.version!r} is invalid; valid: 1.1, 2.0")
        object.__setattr__(self, "version", version)


TASK_SPECS: dict[str, type[TaskSpec]] = {
    "glue": GlueTaskSpec,
    "math": MathTaskSpec,
    "commonsense": CommonsenseTaskSpec,
    "lm": LmTaskSpec,
    "superglue": SuperGlueTaskSpec,
    "squad": SquadTaskSpec,
}

# the model head each family trains (phases.load_base builds it; encoder families need model.kind=encoder)
HEADS = ("sequence_classification", "multiple_choice", "question_answering", "causal_lm")


def model_head(t: TaskSpec) -> str:
    """The ``transformers`` head a task trains: one of :data:`HEADS`."""
    if t.family == "squad":
        return "question_answering"
    if t.family == "superglue":
        return "multiple_choice" if t.layout == "copa" else "sequence_classification"
    if t.family == "glue":
        return "sequence_classification"
    return "causal_lm"


@dataclass(frozen=True, kw_only=True)
class TrainerSpec:
    """``configs/trainer/default.yaml`` (besides the optimizer keys of :class:`OptimSpec`)."""

    mixed_precision: str = _f(choices=("auto", "no", "bf16", "fp16"))
    cpu: bool = False
    checkpoint_every: int = _f(1, lo=0)
    checkpoint_steps: int = _f(500, lo=0)
    keep_checkpoints: int = _f(2, lo=1)
    save_best_adapter: bool = True
    num_workers: int = _f(0, lo=0)
    eval_batch_size: int = _f(64, lo=1)
    threads: int | None = _f(None, lo=1)
    progress: bool = True
    log_every: int = _f(10, lo=1)
    interrupt_at_step: int | None = _f(None, lo=1)


@dataclass(frozen=True, kw_only=True)
class LoggerSpec:
    name: str = _f(choices=("wandb", "none"))
    project: str = "loraxs"
    entity: str | None = None
    mode: str = _f("offline", choices=("offline", "online", "disabled"))
    group: str | None = None
    tags: list[str] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class PathsSpec:
    root_dir: str
    data_dir: str
    output_dir: str
    cache_dir: str


@dataclass(frozen=True, kw_only=True)
class GridSpec:
    """Set by a sweep file: its name and the tasks its grid is for."""

    name: str
    tasks: list[str] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class RunSpec:
    """Everything one run needs, typed and checked."""

    model: ModelSpec
    task: TaskSpec
    optim: OptimSpec
    trainer: TrainerSpec
    adapter: AdapterConfig
    logger: LoggerSpec
    paths: PathsSpec
    seed: int
    resume: str | None
    init_from: str | None
    init_from_head: bool
    run_name: str | None
    grid: GridSpec | None
    table: str | None = None  # the paper table a run belongs to (set by scripts/table_*.sh), recorded only
    skip_finished: bool = False  # skip a run whose same config already finished under paths.output_dir
    dry_run: bool = False  # print the run's plan (name, optimizer steps) instead of running it
    export_to: str | None = None  # copy the reported adapter (or model) there when the run finishes

    @property
    def rank_tag(self) -> str:
        """``r<rank>``, or ``full`` for full fine-tuning: the one rank in run names, metrics and W&B."""
        return "full" if self.adapter.method == "full" else f"r{self.adapter.rank}"

    @property
    def name(self) -> str:
        return self.run_name or f"{self.task.name}_{self.adapter.method}_{self.rank_tag}"


# ------------------------------------------------------------------ typed reading of one mapping
def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _check_type(value: Any, tp: Any, where: str) -> Any:
    """``value`` as type ``tp`` (ints accepted for floats), or ConfigError."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arm in typing.get_args(tp):
            if arm is type(None):
                if value is None:
                    return None
                continue
            try:
                return _check_type(value, arm, where)
            except ConfigError as e:
                errors.append(e)
        names = " or ".join(_type_name(a) if a is not type(None) else "null" for a in typing.get_args(tp))
        raise ConfigError(f"{where}={value!r} is invalid; expected {names}")
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}={value!r} is invalid; expected a list of {_type_name(item)}")
        return [_check_type(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        _, item = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}={value!r} is invalid; expected a mapping")
        return {str(k): _check_type(v, item, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}={value!r} is invalid; expected a mapping of {', '.join(_keys(tp))}")
        return read(tp, value, where)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}={value!r} is invalid; expected a number")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise ConfigError(f"{where}={value!r} is invalid; expected an integer")
        return int(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}={value!r} is invalid; expected true or false")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}={value!r} is invalid; expected a string")
        return value
    return value


def _keys(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def read(cls: type, data: dict[str, Any], where: str | dict[str, str], exclude: tuple[str, ...] = ()) -> Any:
    """``cls(**data)`` with every key known, typed and in range. ``where`` names the config node (``task``), or maps
    field names to their node (``{"*": "task", "grad_accum": "trainer"}``); ``exclude``: keys of the same node that
    another spec reads."""
    node = (lambda name: where.get(name, where["*"])) if isinstance(where, dict) else (lambda name: where)
    hints = typing.get_type_hints(cls)
    known = [f for f in dataclasses.fields(cls) if f.name not in exclude]
    names = {f.name for f in known}
    unknown = sorted(k for k in data if k not in names and k not in exclude)
    if unknown:
        valid = ", ".join(sorted(names | set(exclude)))
        raise ConfigError(
            f"{node(unknown[0])}.{unknown[0]} is not a config key (a typo, or added with + but read by nothing); "
            f"valid keys of {node(unknown[0])}: {valid}"
        )
    kwargs = {}
    for f in known:
        key = f"{node(f.name)}.{f.name}"
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{key} is missing; set it (see configs/)")
            continue
        value = _check_type(data[f.name], hints[f.name], key)
        meta = f.metadata
        if meta.get("choices") and value not in meta["choices"]:
            raise ConfigError(f"{key}={value!r} is invalid; valid: {', '.join(map(str, meta['choices']))}")
        if value is not None and not isinstance(value, (list, dict)):
            lo, hi = meta.get("min"), meta.get("max")
            if lo is not None and (value <= lo if meta.get("min_open") else value < lo):
                raise ConfigError(f"{key}={value!r} is invalid; expected {'>' if meta.get('min_open') else '>='} {lo}")
            if hi is not None and value > hi:
                raise ConfigError(f"{key}={value!r} is invalid; expected <= {hi}")
        kwargs[f.name] = value
    return cls(**kwargs)


# ------------------------------------------------------------------ the whole config
def build_spec(cfg: Any) -> RunSpec:
    """The :class:`RunSpec` of a composed config (``DictConfig`` or plain dict). Raises :class:`ConfigError`."""
    if not isinstance(cfg, dict):
        from omegaconf import OmegaConf

        try:
            cfg = OmegaConf.to_container(cfg, resolve=True)
        except Exception as e:  # an interpolation that does not resolve
            raise ConfigError(f"the config does not resolve: {str(e).splitlines()[0]}") from None
    cfg = dict(cfg)
    cfg.pop("hydra", None)
    top = {"rank", "seed", "resume", "init_from", "init_from_head", "run_name", "grid", "recipes"}
    top |= {"table", "skip_finished", "dry_run", "export_to"}
    groups = {"model", "task", "adapter", "trainer", "logger", "paths"}
    unknown = sorted(set(cfg) - top - groups)
    if unknown:
        raise ConfigError(
            f"{unknown[0]} is not a config key (a typo, or added with + but read by nothing); "
            f"valid top-level keys: {', '.join(sorted(top | groups))}"
        )
    for g in groups:
        if not isinstance(cfg.get(g), dict):
            raise ConfigError(f"config group {g} is missing or not a mapping")
    task_cfg, trainer_cfg = cfg["task"], cfg["trainer"]
    family = task_cfg.get("family")
    if family not in TASK_SPECS:
        raise ConfigError(f"task.family={family!r} is unknown; valid: {', '.join(FAMILIES)}")
    optim = read(
        OptimSpec,
        {
            **{k: task_cfg[k] for k in TASK_OPTIM_KEYS if k in task_cfg},
            **{k: trainer_cfg[k] for k in TRAINER_OPTIM_KEYS if k in trainer_cfg},
        },
        {"*": "task", **dict.fromkeys(TRAINER_OPTIM_KEYS, "trainer")},
    )
    task = read(TASK_SPECS[family], task_cfg, "task", exclude=TASK_OPTIM_KEYS)
    trainer = read(TrainerSpec, trainer_cfg, "trainer", exclude=TRAINER_OPTIM_KEYS)
    model = read(ModelSpec, cfg["model"], "model")
    logger = read(LoggerSpec, cfg["logger"], "logger")
    paths = read(PathsSpec, cfg["paths"], "paths")
    grid = _check_type(cfg.get("grid"), GridSpec | None, "grid")
    seed = _check_type(cfg.get("seed", 0), int, "seed")
    if not 0 <= seed < 2**32:
        raise ConfigError(f"seed={seed} is invalid; expected an integer in [0, 2**32)")
    rank = cfg.get("rank")
    adapter_cfg = dict(cfg["adapter"])
    method = adapter_cfg.get("method")
    if method != "full":
        rank = _check_type(rank, int, "rank")
        if rank < 1:
            raise ConfigError(f"rank={rank} is invalid; expected an integer >= 1")
        if adapter_cfg.get("rank") != rank:
            raise ConfigError(
                f"adapter.rank={adapter_cfg.get('rank')!r} disagrees with rank={rank}; the rank is set once, "
                f"with rank={adapter_cfg.get('rank')} (adapter.rank follows it)"
            )
        if model.max_rank is not None and rank > model.max_rank:
            raise ConfigError(
                f"rank={rank} exceeds what model {model.name} allows; valid: 1..{model.max_rank} "
                "(min(d_in, d_out) of its target layers)"
            )
    try:
        adapter = AdapterConfig.from_dict(adapter_cfg)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"adapter: {e}") from None
    spec = RunSpec(
        model=model,
        task=task,
        optim=optim,
        trainer=trainer,
        adapter=adapter,
        logger=logger,
        paths=paths,
        seed=seed,
        resume=_check_type(cfg.get("resume"), str | None, "resume"),
        init_from=_check_type(cfg.get("init_from"), str | None, "init_from"),
        init_from_head=_check_type(cfg.get("init_from_head", False), bool, "init_from_head"),
        run_name=_check_type(cfg.get("run_name"), str | None, "run_name"),
        grid=grid,
        table=_check_type(cfg.get("table"), str | None, "table"),
        skip_finished=_check_type(cfg.get("skip_finished", False), bool, "skip_finished"),
        dry_run=_check_type(cfg.get("dry_run", False), bool, "dry_run"),
        export_to=_check_type(cfg.get("export_to"), str | None, "export_to"),
    )
    _check_combinations(spec)
    return spec


def reported_metrics(t: TaskSpec) -> list[str]:
    """The metric names a task's evaluation reports (``task.main_metric`` must be one): GLUE ``task.metrics``
    (``<split>/<metric>`` with several eval splits, e.g. MNLI's ``matched/accuracy``), ``<set>/accuracy`` of each
    math eval set, ``<benchmark>/accuracy`` and ``average/accuracy`` for commonsense, SuperGLUE ``task.metrics``,
    SQuAD EM / F1 (2.0: also on the answerable and unanswerable questions), lm perplexity, bits per character
    and the mean token NLL (nats)."""
    if isinstance(t, GlueTaskSpec):
        splits = [s.removeprefix("validation_") + "/" for s in t.eval_splits] if len(t.eval_splits) > 1 else [""]
        return [p + m for p in splits for m in t.metrics]
    if isinstance(t, CommonsenseTaskSpec):
        return [f"{b}/accuracy" for b in t.benchmarks] + ["average/accuracy"]
    if isinstance(t, SuperGlueTaskSpec):
        return list(t.metrics)
    if isinstance(t, SquadTaskSpec):
        both = ["exact_match", "f1"]
        return both + (["has_ans_exact_match", "has_ans_f1", "no_ans_exact_match"] if t.version == "2.0" else [])
    if isinstance(t, LmTaskSpec):
        return ["perplexity", "bpc", "nll"]
    return [f"{name}/accuracy" for name in getattr(t, "eval_sets", {})]


def _check_combinations(spec: RunSpec) -> None:
    """Rules across keys (each message names the keys and what would be valid)."""
    t, o, a = spec.task, spec.optim, spec.adapter
    if spec.grid is not None and spec.grid.tasks and t.name not in spec.grid.tasks:
        raise ConfigError(
            f"sweep={spec.grid.name} is the grid of {', '.join(spec.grid.tasks)}, not task={t.name}"
            + (
                "; use sweep=glue_loraxs_mnli_grid (started from the MNLI adapter of each rank)"
                if t.name in ("mrpc", "rte", "stsb")
                else ""
            )
        )
    m = spec.model
    head = model_head(t)
    need = "decoder" if head == "causal_lm" else "encoder"
    if m.kind != need:
        what = {
            "sequence_classification": "a sequence classifier",
            "multiple_choice": "a multiple-choice classifier",
            "question_answering": "a span (question answering) head",
            "causal_lm": "a causal LM",
        }[head]
        example = "model=minilm_l6 or roberta_large" if need == "encoder" else "model=smollm2_135m or gpt2"
        raise ConfigError(
            f"task={t.name} trains {what} and needs {'an' if need == 'encoder' else 'a'} {need} model; model={m.name} is model.kind={m.kind}; "
            f"use a model with model.kind={need}, e.g. {example}"
        )
    reported = reported_metrics(t)
    if t.main_metric not in reported:
        raise ConfigError(
            f"task.main_metric={t.main_metric!r} is not a metric task={t.name} reports; valid: {', '.join(reported)}"
        )
    if t.family not in ("glue", "superglue") and t.selection == "best_epoch":
        raise ConfigError(
            f"task.selection=best_epoch would pick the epoch by test-set scores on task={t.name}; "
            "valid: final (the last model) or val_loss (held-out training examples, with task.val_set_size > 0)"
        )
    if t.selection == "val_loss" and getattr(t, "val_set_size", 0) == 0:
        raise ConfigError(
            "task.selection=val_loss needs held-out training examples: set task.val_set_size > 0 "
            "(math and commonsense tasks)"
        )
    if t.selection == "best_epoch" and not t.eval_every_epoch:
        raise ConfigError("task.selection=best_epoch needs task.eval_every_epoch=true")
    if a.method == "lorasb" and a.lorasb_lr_rule != "lr" and o.warmup_steps is None and o.warmup_ratio == 0:
        raise ConfigError(
            f"adapter=lorasb with adapter.lorasb_lr_rule={a.lorasb_lr_rule} needs task.warmup_ratio > 0 "
            "(η_eff = lr / (warmup_ratio · total)); set task.warmup_ratio or adapter.lorasb_lr_rule=lr"
        )
    if a.method == "lorasb" and a.lorasb_lr_rule != "lr" and o.warmup_steps is not None:
        raise ConfigError(
            "adapter=lorasb with a warmup rule uses task.warmup_ratio (η_eff = lr / (warmup_ratio · total)); "
            "set task.warmup_steps=null or adapter.lorasb_lr_rule=lr"
        )
    if spec.init_from is not None and a.method == "full":
        raise ConfigError("init_from is for adapters; adapter=full starts from model.name_or_path")
    if t.selection == "val_loss" and a.method == "full":
        raise ConfigError("task.selection=val_loss keeps the best adapter; with adapter=full use task.selection=final")


def validate(cfg: Any) -> RunSpec:
    """:func:`build_spec`, then the cheap checks of the model source and the data files. Raises ConfigError."""
    from .inputs import check_inputs

    spec = build_spec(cfg)
    if not spec.dry_run:  # a dry run lists jobs whose data need not be here
        check_inputs(spec)
    return spec
