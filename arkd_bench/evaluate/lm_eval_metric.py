"""`lm_eval`: lm-evaluation-harness tasks scored on the evaluated model, inside the run.

Optional: `pip install -e '.[lm-eval]'` (lm-eval 0.4.x; `make install` installs it). A recipe
that names the metric without lm-eval installed fails validation with that command.

For each cell with a model (the teacher and every trained student; the model-free echo and
constant baselines have none) the metric wraps the model and tokenizer in memory in
`lm_eval.models.huggingface.HFLM(pretrained=model, tokenizer=tokenizer)` and calls
`lm_eval.simple_evaluate(..., log_samples=True)` with a `TaskManager(include_path=...)`, so
local task YAMLs work offline. Each task and measure (`acc` by default; `acc_norm`,
`exact_match`...) becomes a leaderboard column `<task>/<measure>`, scored x100 per item from
lm-eval's logged samples (an item's `acc` is 0 or 100): the task's items play the part the
test examples play for other metrics, so rows get the harness's own intervals over items and
seeds and paired comparisons item by item. A measure must be a mean of per-item scores in
[0, 1] where higher is better (the mean of the logged scores is checked against lm-eval's
aggregate); a corpus-level measure (f1, bleu, perplexity) has no per-item score to pair and
is refused. lm-eval's own value, standard error (`<measure>_stderr`) and item count are kept
per cell in `scores.json` under `benchmarks`.

The model's train/eval mode, the tokenizer (lm-eval may add a pad token) and the global
random states are left as they were; lm-eval's logs and progress bars are hidden unless
`verbose`.
"""
from __future__ import annotations

import contextlib
import difflib
import importlib.util
import io
import math
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, Field, field_validator, model_validator

from arkd_bench.evaluate.base import package_version
from arkd_bench.evaluate.benchmark import BenchmarkMetric, BenchmarkScores
from arkd_bench.plugins.options import PluginOptions

INSTALL = "pip install -e '.[lm-eval]'"
DISTRIBUTION = "lm-eval"


def lm_eval_installed() -> bool:
    # find_spec locates the package without importing it (importing pulls in torch).
    return importlib.util.find_spec("lm_eval") is not None


def _missing() -> ValueError:
    return ValueError(f"the lm_eval metric needs lm-eval (lm-evaluation-harness), which is not installed: "
                      f"{INSTALL} (or pip install 'arkd-bench[lm-eval]')")


class LmEvalOptions(PluginOptions):
    """Options of the lm_eval metric; checked without importing lm-eval."""

    tasks: list[str] = Field(min_length=1, description="lm-eval task (or group) names, e.g. [arc_easy, piqa]")
    include_path: list[str] = Field(default_factory=list,
                                    description="folders or YAML files of local task configs (lm_eval "
                                                "--include_path); relative to the working directory")
    include_defaults: bool = Field(True, description="also index lm-eval's own ~15,000 task configs (tens of "
                                                     "seconds, once per process); false: include_path only")
    measures: list[str] = Field(default_factory=lambda: ["acc"], min_length=1,
                                description="per-item measures, one column <task>/<measure> each: acc, "
                                            "acc_norm, exact_match... (means of per-item scores in [0, 1])")
    num_fewshot: int | None = Field(None, ge=0, description="few-shot examples; None: each task's own default")
    limit: int | None = Field(None, ge=1, description="score the first N items of each task (lm_eval --limit)")
    batch_size: int = Field(8, ge=1, description="requests per forward pass")
    max_length: int | None = Field(None, ge=1, description="context tokens; None: the model config's")
    filter: str | None = Field(None, description="the lm-eval filter whose responses are scored; None: the "
                                                 "task's only filter")
    apply_chat_template: bool = Field(False, description="format prompts with the tokenizer's chat template")
    fewshot_seed: int = Field(1234, description="seed of lm-eval's few-shot sampler (its default)")
    verbose: bool = Field(False, description="show lm-eval's logs and progress bars")

    @field_validator("include_path", mode="before")
    @classmethod
    def _one_path(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _installed_and_found(self) -> LmEvalOptions:
        if not lm_eval_installed():
            raise _missing()
        for path in self.include_path:
            if not Path(path).expanduser().exists():
                raise ValueError(f"include_path {path!r} does not exist (relative paths resolve against the "
                                 f"working directory, {Path.cwd()})")
        return self


class LmEval(BenchmarkMetric):
    """lm-evaluation-harness tasks on the evaluated model: one column per task and measure,
    one x100 score per task item."""

    name: ClassVar[str] = "lm_eval"
    higher_is_better: ClassVar[bool] = True
    Options: ClassVar[type[BaseModel]] = LmEvalOptions

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._task_manager = None  # indexing lm-eval's tasks takes seconds: once per metric object

    def columns(self) -> list[str]:
        """The columns when every name in `tasks` is a single task (a group gives one per task)."""
        return [f"{task}/{measure}" for task in self.options.tasks for measure in self.options.measures]

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "lm_eval_version": package_version(DISTRIBUTION)}

    def task_manager(self):
        if self._task_manager is None:
            from lm_eval.tasks import TaskManager

            paths = [str(Path(p).expanduser().resolve()) for p in self.options.include_path]
            self._task_manager = TaskManager(include_path=paths or None,
                                             include_defaults=self.options.include_defaults)
        return self._task_manager

    def score_benchmark(self, model: Any, tokenizer: Any) -> dict[str, BenchmarkScores]:
        if not lm_eval_installed():
            raise _missing()
        with _quiet(self.options.verbose), _kept_random_states(), _kept_mode(model):
            import copy

            import lm_eval
            from lm_eval.models.huggingface import HFLM

            manager = self.task_manager()
            self._check_tasks(manager)
            # A copy: HFLM sets a pad token on a tokenizer without one, and the run's tokenizer is shared.
            lm = HFLM(pretrained=model, tokenizer=copy.deepcopy(tokenizer), batch_size=self.options.batch_size,
                      max_length=self.options.max_length)
            out = lm_eval.simple_evaluate(
                model=lm, tasks=list(self.options.tasks), task_manager=manager, num_fewshot=self.options.num_fewshot,
                limit=self.options.limit, log_samples=True, apply_chat_template=self.options.apply_chat_template,
                fewshot_random_seed=self.options.fewshot_seed,
                # The stderr of a mean is closed-form; bootstrapping only serves measures not used here.
                bootstrap_iters=1000)
        return {f"{task}/{measure}": self._column(out, task, measure)
                for task in out["samples"] for measure in self.options.measures}

    def _check_tasks(self, manager) -> None:
        known = set(manager.all_tasks)
        for task in self.options.tasks:
            if task not in known:
                near = difflib.get_close_matches(task, sorted(known), n=3)
                where = (f"include_path {self.options.include_path}" if self.options.include_path else "")
                if self.options.include_defaults:
                    where = " and ".join(filter(None, ["lm-eval's own tasks", where]))
                raise ValueError(f"lm_eval: unknown task {task!r} (looked in {where or 'nothing'})"
                                 + (f"; did you mean {', '.join(near)}?" if near else ""))

    def _column(self, out: dict[str, Any], task: str, measure: str) -> BenchmarkScores:
        samples = out["samples"][task]
        filters = sorted({s["filter"] for s in samples})
        chosen = self.options.filter
        if chosen is None:
            if len(filters) != 1:
                raise ValueError(f"lm_eval: task {task!r} has the filters {filters}; choose one with the "
                                 "`filter` option")
            chosen = filters[0]
        elif chosen not in filters:
            raise ValueError(f"lm_eval: task {task!r} has no filter {chosen!r} (it has {filters})")
        rows = sorted((s for s in samples if s["filter"] == chosen), key=lambda s: s["doc_id"])
        label = f"lm_eval {task}/{measure}"
        if rows and measure not in rows[0]:
            raise ValueError(f"{label}: the task logs no per-item {measure!r} (it logs {rows[0].get('metrics')})")
        values = [_fraction(s[measure], label, s["doc_id"]) for s in rows]
        results = out["results"][task]
        reported = results.get(f"{measure},{chosen}")
        mean = sum(values) / len(values) if values else float("nan")
        if not isinstance(reported, (int, float)) or not math.isclose(mean, reported, rel_tol=1e-9, abs_tol=1e-9):
            raise ValueError(f"{label}: lm-eval reports {reported!r}, not the mean {mean!r} of its per-item scores "
                             "(a corpus-level measure has no per-item score to pair; use a mean such as acc)")
        if out.get("higher_is_better", {}).get(task, {}).get(measure) is False:
            raise ValueError(f"{label}: lower is better for this measure; the metric's columns are higher-is-better")
        stderr = results.get(f"{measure}_stderr,{chosen}")
        output_type = out.get("configs", {}).get(task, {}).get("output_type")
        summary = {"tool": f"lm-eval {package_version(DISTRIBUTION)}", "task": task, "measure": measure,
                   "filter": chosen, "mean": 100 * reported,
                   "stderr": 100 * stderr if isinstance(stderr, (int, float)) else None, "n": len(values),
                   "num_fewshot": out.get("n-shot", {}).get(task), "task_version": out.get("versions", {}).get(task),
                   "output_type": output_type}
        return BenchmarkScores(scores=[100 * v for v in values], items=[_item(s, output_type) for s in rows],
                               summary=summary)


def _fraction(value: Any, label: str, doc_id: Any) -> float:
    if isinstance(value, bool) or (isinstance(value, (int, float)) and 0 <= value <= 1):
        return float(value)
    raise ValueError(f"{label}: item {doc_id} scores {value!r}, not a number in [0, 1]; the metric takes "
                     "measures that are per-item means (acc, acc_norm, exact_match)")


def _item(sample: dict[str, Any], output_type: str | None) -> dict[str, Any]:
    """What an item was, as a generation record shows it: the prompt, the model's answer (for a
    multiple-choice task the choice of highest log-likelihood, acc's pick) and the gold answer."""
    arguments = sample.get("arguments") or [[""]]
    prompt = str(arguments[0][0])
    target = sample.get("target")
    responses = sample.get("filtered_resps") or []
    if output_type == "multiple_choice":
        choices = [str(a[1]).strip() for a in arguments]
        scores = [r[0] if isinstance(r, (list, tuple)) else r for r in responses]
        best = max(range(len(scores)), key=scores.__getitem__) if scores else None
        prediction = choices[best] if best is not None and best < len(choices) else ""
        gold = ([choices[t] for t in target] if isinstance(target, list) and all(isinstance(t, int) for t in target)
                else [choices[target]] if isinstance(target, int) and 0 <= target < len(choices) else [str(target)])
        return {"prompt": prompt, "prediction": prediction, "references": gold}
    response = responses[0] if isinstance(responses, list) and responses else responses
    return {"prompt": prompt, "prediction": str(response), "references": [str(target)]}


@contextlib.contextmanager
def _quiet(verbose: bool):
    """lm-eval's (and datasets' and transformers') log lines and progress bars would drown the
    run's own; they are shown after all on an error, so nothing that explains a failure is lost."""
    if verbose:
        yield
        return
    import logging

    loggers = [logging.getLogger(name) for name in ("lm_eval", "datasets", "transformers")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            yield
    except BaseException:
        import sys

        sys.stderr.write(captured.getvalue()[-20000:])
        raise
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


@contextlib.contextmanager
def _kept_random_states():
    """simple_evaluate seeds Python's, numpy's and torch's global generators; the run's own
    streams (training of later cells, sampling) must not depend on whether lm_eval ran."""
    import random

    import numpy as np
    import torch

    states = (random.getstate(), np.random.get_state(), torch.get_rng_state(),
              torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
        if states[3] is not None:
            torch.cuda.set_rng_state_all(states[3])


@contextlib.contextmanager
def _kept_mode(model):
    """HFLM puts the model in eval mode (what scoring needs); its mode is restored after."""
    training = getattr(model, "training", False)
    try:
        yield
    finally:
        if training:
            model.train()
