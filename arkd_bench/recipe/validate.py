"""Load a recipe and check all of it, plugin names and options included, before any
model is loaded.

Two waves: the schema, plugins, names, options and files first, none of which needs torch or
transformers (a typo is reported in about a second); then, only when those pass, the models'
transformers configs (preflight.config_problems), which import transformers and torch."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from arkd_bench.method import build_data_policy, build_strategy, build_terms
from arkd_bench.plugins import PluginLoadError, Plugins, load_plugins
from arkd_bench.plugins.registry import RegistryError, unknown_name_message
from arkd_bench.recipe.loader import Path_, Problem, RecipeError, format_path, load_yaml, pydantic_problems, read_text
from arkd_bench.recipe.preflight import config_problems, preflight_problems, unreadable_file
from arkd_bench.recipe.processes import process_problems, sharding_problems
from arkd_bench.recipe.schema import LOG_PREFIXES, RESERVED_METHODS, MethodSpec, Recipe
from arkd_bench.recipe.select import MIN_FINAL_SEEDS, axis_options, candidates, patched_method


@dataclass
class LoadedRecipe:
    recipe: Recipe
    path: Path
    text: str
    plugins: Plugins

    @property
    def base_dir(self) -> Path:
        return recipe_base_dir(self.recipe, self.path)


def recipe_base_dir(recipe: Recipe, path: Path) -> Path:
    """The folder relative paths resolve against: the recipe's `base_dir` (relative to the
    recipe's folder), else the recipe's folder."""
    base = getattr(recipe, "base_dir", None)
    return path.parent / Path(base).expanduser() if base else path.parent


def parse_recipe(text: str, file: str) -> tuple[Recipe, dict[Path_, int]]:
    loaded = load_yaml(text, file)
    try:
        return Recipe.model_validate(loaded.data), loaded.lines
    except ValidationError as exc:
        # Passing the model lets an "unknown field" error list the valid ones.
        raise RecipeError(file, pydantic_problems(exc, model=Recipe), loaded.lines) from None


def load_recipe(
    path: str | Path,
    *,
    plugins_dirs: Iterable[str | Path] = (),
    plugins: Plugins | None = None,
    text: str | None = None,
) -> LoadedRecipe:
    """Parse, load the recipe's plugins, and validate every plugin reference.

    Raises RecipeError listing every problem found, each with file:line.
    """
    path = Path(path)
    file = str(path)
    text = read_text(path) if text is None else text
    try:
        recipe, lines = parse_recipe(text, file)
    except RecipeError as exc:
        if exc.lines:  # a schema error: check the parts that are valid on their own too, in the same pass
            try:
                exc.problems += _problems_beside_schema_errors(text, file, path, plugins, plugins_dirs)
            except Exception:  # noqa: BLE001 - a best effort; the schema errors themselves must not be lost
                pass
        raise
    base_dir = recipe_base_dir(recipe, path)
    if not base_dir.is_dir():
        raise RecipeError(file, [Problem(("base_dir",), f"{base_dir} is not a folder")], lines)
    if plugins is None:
        files = [base_dir / p for p in recipe.plugins]
        unreadable = [Problem(("plugins", index), f"plugin file: {why}")
                      for index, plugin_file in enumerate(files) if (why := unreadable_file(plugin_file))]
        if unreadable:
            raise RecipeError(file, unreadable, lines)
        try:
            plugins = load_plugins(files, plugins_dirs=plugins_dirs)
        except (PluginLoadError, RegistryError) as exc:
            raise RecipeError(file, [Problem(("plugins",), str(exc))], lines) from None
    problems = check_plugin_references(recipe, plugins)
    # What needs the file system: run refuses the same before any cell.
    bad_datasets = {p.path[1] for p in problems if p.path[:1] == ("datasets",)}
    problems += preflight_problems(recipe, plugins, base_dir, skip_datasets=bad_datasets)
    if problems:
        raise RecipeError(file, problems, lines)
    # Only now what imports transformers or torch: a recipe with a typo is answered without them.
    problems = config_problems(recipe) + strategy_problems(recipe, plugins)
    problems = problems or sharding_problems(recipe, plugins) or process_problems(recipe, plugins)  # torchrun
    if problems:
        raise RecipeError(file, problems, lines)
    return LoadedRecipe(recipe=recipe, path=path, text=text, plugins=plugins)


def _partial_recipe(data: dict) -> tuple[Recipe, dict[str, list[int]], set[str]]:
    """The recipe made of the parts that validate on their own: (recipe, original index of
    each kept list item per section, sections with any invalid part)."""
    from pydantic import TypeAdapter

    fields, index_maps, broken = {}, {}, set()
    for name, info in Recipe.model_fields.items():
        if name not in data:
            if info.is_required():  # reported as missing; checks that could name it wait for it
                fields[name] = [] if _list_item_model(info.annotation) is not None else ""
                broken.add(name)
            continue
        item_model = _list_item_model(info.annotation)
        if item_model is not None and isinstance(data[name], list):
            kept = []
            for i, item in enumerate(data[name]):
                try:
                    kept.append((i, item_model.model_validate(item)))
                except ValidationError:
                    broken.add(name)
            fields[name] = [item for _, item in kept]
            index_maps[name] = [i for i, _ in kept]
            continue
        try:
            fields[name] = TypeAdapter(info.annotation).validate_python(data[name])
        except ValidationError:
            broken.add(name)
    return Recipe.model_construct(**fields), index_maps, broken


def _list_item_model(annotation) -> type[BaseModel] | None:
    from typing import get_args, get_origin

    if get_origin(annotation) is list:
        (item,) = get_args(annotation)
        if isinstance(item, type) and issubclass(item, BaseModel):
            return item
    return None


# Which sections a problem's meaning depends on: a check naming a method is only judged when
# every method validated (an invalid one could be the one it names).
_DEPENDS_ON = {"checks": {"methods", "datasets", "teachers", "students", "eval"}, "eval": {"methods", "eval"}}


def _problems_beside_schema_errors(text: str, file: str, path: Path, plugins: Plugins | None,
                                   plugins_dirs) -> list[Problem]:
    """Plugin, name and reference problems of the parts of a recipe with schema errors that
    validate on their own, at their original indices; problems that a schema error could
    explain are left out."""
    recipe, index_maps, broken = _partial_recipe(load_yaml(text, file).data)
    if plugins is None:
        if "plugins" in broken:
            return []
        files = [recipe_base_dir(recipe, path) / p for p in recipe.plugins]
        if any(unreadable_file(f) for f in files):
            return []  # reported once the schema is fixed; a missing file makes names unknowable
        try:
            plugins = load_plugins(files, plugins_dirs=plugins_dirs)
        except (PluginLoadError, RegistryError):
            return []
    # problems under a section that did not validate (train, eval) are dropped below; the
    # transformers config checks wait for a recipe without schema errors (see config_problems)
    found = check_plugin_references(recipe, plugins) + preflight_problems(recipe, plugins,
                                                                         recipe_base_dir(recipe, path))
    kept = []
    for problem in found:
        section = problem.path[0] if problem.path else ""
        if broken & _DEPENDS_ON.get(section, set()) or (section in broken and section not in index_maps):
            continue
        if section in index_maps and len(problem.path) > 1 and isinstance(problem.path[1], int):
            problem.path = (section, index_maps[section][problem.path[1]], *problem.path[2:])
        kept.append(problem)
    return kept


def _check_options(plugins: Plugins, kind: str, name: str, options: dict, path: Path_) -> list[Problem]:
    registry = plugins.registry(kind)
    if name not in registry:
        return [Problem(path + ("name",), unknown_name_message(kind, name, registry.names()))]
    model: type[BaseModel] | None = registry.get(name).options_model
    if model is None:
        if options:
            return [Problem(path + ("options",), f"{kind} {name!r} takes no options")]
        return []
    try:
        model.model_validate(options)
    except ValidationError as exc:
        problems = pydantic_problems(exc, path + ("options",))
        valid = ", ".join(sorted(model.model_fields)) or "(none)"
        for problem in problems:
            if problem.message == "unknown field":
                problem.message += f"; {kind} {name!r} takes: {valid}"
        return problems
    return []


def check_plugin_references(recipe: Recipe, plugins: Plugins) -> list[Problem]:
    problems: list[Problem] = []
    for i, dataset in enumerate(recipe.datasets):
        problems += _check_options(plugins, "dataset", dataset.source, dataset.options, ("datasets", i))
        if problems and problems[-1].path == ("datasets", i, "name"):
            problems[-1].path = ("datasets", i, "source")
    for i, method in enumerate(recipe.methods):
        for j, term in enumerate(method.objective):
            problems += _check_options(plugins, "divergence", term.name, term.options, ("methods", i, "objective", j))
        wpath: Path_ = ("methods", i, "weighting")
        found = _check_options(plugins, "weighting", method.weighting.name, method.weighting.options, wpath)
        problems += found
        if not found:
            problems += _check_weighting_terms(plugins, method, wpath)
        problems += _check_data_policy(plugins, method, ("methods", i, "data"))
    for i, metric in enumerate(recipe.eval.metrics):
        problems += _check_options(plugins, "metric", metric.name, metric.options, ("eval", "metrics", i))
    problems += _check_generation(recipe.eval.generation)
    problems += _check_method_names(recipe, plugins)
    problems += _check_select(recipe, plugins)
    return problems


def _check_select(recipe: Recipe, plugins: Plugins) -> list[Problem]:
    """`select:` names methods and a metric of the recipe, the final run has enough seeds, and
    every value of every axis, then every candidate, is a valid method (plugin options included)."""
    spec = getattr(recipe, "select", None)
    if spec is None:
        return []
    problems = []
    methods = [m.name for m in recipe.methods]
    for i, name in enumerate(spec.methods):
        if name not in methods:
            problems.append(Problem(("select", "methods", i), unknown_name_message("method", name, methods)))
    if len(set(spec.methods)) != len(spec.methods):
        problems.append(Problem(("select", "methods"), f"a method is listed twice: {spec.methods}"))
    metrics = [m.name for m in recipe.eval.metrics]
    if spec.metric is not None and spec.metric not in metrics:
        problems.append(Problem(("select", "metric"), f"{spec.metric!r} is not one of eval.metrics "
                                f"({', '.join(metrics)}): candidates are scored as the eval section says"))
    if len(recipe.seeds) < MIN_FINAL_SEEDS:
        problems.append(Problem(("seeds",), f"the settings select chooses run on test with these seeds: "
                                f"give at least {MIN_FINAL_SEEDS}, got {recipe.seeds}"))
    axes = [a.name for a in spec.axes]
    if len(set(axes)) != len(axes):
        problems.append(Problem(("select", "axes"), f"axis names must be unique, got {axes}"))
    for i, axis in enumerate(spec.axes):
        labels = [o.label for o in axis_options(axis)]
        if len(set(labels)) != len(labels):
            problems.append(Problem(("select", "axes", i, "values"), f"values that read alike in candidate names: "
                                    f"{labels}; give them apart in 6 significant digits"))
    if problems:
        return problems
    for i, axis in enumerate(spec.axes):
        for j, option in enumerate(axis_options(axis)):
            where = ("select", "axes", i) + (("values", j) if axis.values is not None else ("choices", option.label))
            for name in spec.methods:
                method = next(m for m in recipe.methods if m.name == name)
                try:
                    message = _method_problem(patched_method(method, option.patch), plugins)
                except ValueError as exc:
                    message = str(exc)
                if message:
                    problems.append(Problem(where, f"method {name!r} with {option.axis}={option.label}: {message}"))
    if problems:
        return problems
    for candidate in candidates(recipe):  # values valid alone may clash together
        message = _method_problem(candidate.spec, plugins)
        if message:
            problems.append(Problem(("select", "axes"), f"candidate {candidate.name}: {message}"))
    return problems[:5]


def _method_problem(spec: dict[str, Any], plugins: Plugins) -> str | None:
    """The first problem of a method spec (schema, then plugin names and options), or None."""
    try:
        method = MethodSpec.model_validate(spec)
    except ValidationError as exc:
        problem = pydantic_problems(exc, model=MethodSpec)[0]
        return f"{format_path(problem.path)}: {problem.message}"
    found = []
    for j, term in enumerate(method.objective):
        found += _check_options(plugins, "divergence", term.name, term.options, ("objective", j))
    weighting = _check_options(plugins, "weighting", method.weighting.name, method.weighting.options, ("weighting",))
    found += weighting or _check_weighting_terms(plugins, method, ("weighting",))
    found += _check_data_policy(plugins, method, ("data",))
    return f"{format_path(found[0].path)}: {found[0].message}" if found else None


def _check_weighting_terms(plugins: Plugins, method, path: Path_, construct: bool = False) -> list[Problem]:
    """The strategy accepts the method's terms and options, built as a cell builds it but
    without a cell's seed. Without `construct`, only the WeightingStrategy contract is run
    (its Options and `check_terms`), not the class's own set-up, which may build networks
    with torch (ARKD's policy); `construct` builds it whole, once everything else passed."""
    try:
        terms = build_terms(method, plugins)
    except Exception:  # noqa: BLE001 - the term's own check reports a bad divergence or option
        return []
    try:
        build_strategy(plugins, method.weighting.name, method.weighting.options, terms, whole=construct)
    except (ValueError, TypeError) as exc:
        return [Problem(path, str(exc).splitlines()[0])]
    return []


def strategy_problems(recipe: Recipe, plugins: Plugins) -> list[Problem]:
    """Each method's weighting strategy built whole (this may import torch)."""
    return [problem for i, method in enumerate(recipe.methods)
            for problem in _check_weighting_terms(plugins, method, ("methods", i, "weighting"), construct=True)]


def _check_data_policy(plugins: Plugins, method, path: Path_) -> list[Problem]:
    found = _check_options(plugins, "data_policy", method.data.name, method.data.options, path)
    if found:
        return found
    policy = build_data_policy(method, plugins)
    if policy.targets == "tokens" and [t.name for t in method.objective] != ["fkl"]:
        # FKL against a one-hot target is the cross-entropy; other terms have no such meaning.
        return [Problem(path + ("options", "targets"), "targets: tokens (SFT on the sequences) needs the "
                        f"objective [fkl], got {[t.name for t in method.objective]}")]
    return []


def _check_generation(settings: dict[str, Any]) -> list[Problem]:
    from arkd_bench.evaluate.generate import GenerationSettings

    try:
        GenerationSettings.model_validate(settings)
    except ValidationError as exc:
        return pydantic_problems(exc, ("eval", "generation"), model=GenerationSettings)
    return []


def _check_logged_name(recipe: Recipe, check, path: Path_) -> list[Problem]:
    """`weight/<label>` must name a term of the checked method's objective."""
    if not check.metric.startswith("weight/"):
        return []
    method = next((m for m in recipe.methods if m.name == check.method), None)
    if method is None:
        return []  # reported as an unknown method
    labels = [t.key for t in method.objective]
    label = check.metric.removeprefix("weight/")
    if label not in labels:
        return [Problem(path, unknown_name_message(f"objective term of method {check.method!r}", label, labels))]
    return []


def check_name_problems(check, path: Path_, names: dict[str, list[str]],
                        kinds: dict[str, str] | None = None) -> list[Problem]:
    """A Problem at `path + (field,)` for each name a check uses that `names[field]` lacks:
    method, beats, dataset, teacher, student, recipe, then an evaluation metric (a training-log
    metric is left to the caller). A field not in `names` is not checked; `kinds` names a
    field's kind in the message (default: the field's name)."""
    kinds = kinds or {}
    problems = []
    for field_name in ("method", "beats", "dataset", "teacher", "student", "recipe", "metric"):
        value = getattr(check, field_name)
        if field_name == "metric" and value.startswith(LOG_PREFIXES):
            continue
        if field_name in names and value is not None and value not in names[field_name]:
            message = unknown_name_message(kinds.get(field_name, field_name), value, names[field_name])
            problems.append(Problem(path + (field_name,), message))
    return problems


def _check_method_names(recipe: Recipe, plugins: Plugins) -> list[Problem]:
    methods = [m.name for m in recipe.methods] + list(RESERVED_METHODS)
    problems = []
    if recipe.eval.reference is not None and recipe.eval.reference not in methods:
        problems.append(Problem(("eval", "reference"), unknown_name_message("method", recipe.eval.reference, methods)))
    names = {"method": methods, "beats": methods, "dataset": [d.name for d in recipe.datasets],
             "teacher": [t.name for t in recipe.teachers], "student": [s.name for s in recipe.students],
             "metric": [m.name for m in recipe.eval.metrics]}
    for i, check in enumerate(recipe.checks):
        problems += check_name_problems(check, ("checks", i), names, kinds={"beats": "method"})
        if check.metric.startswith(LOG_PREFIXES):
            problems += _check_logged_name(recipe, check, ("checks", i, "metric"))
    return problems
