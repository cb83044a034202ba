"""Experiment trackers (`train.log_with`) through accelerate's tracker classes.

Each distilled cell is one tracker run, named `<method>-seed<seed>-<cell id>`, whose config
is the cell's summary (id, method, seed, ...) with its resolved settings under `config/`
(flattened to `a/b` keys), and which receives every record the loop writes to
`train_log.jsonl` (its numbers, at its step). Trackers that keep files (tensorboard, aim)
write under `RUNDIR/trackers/`; those with a project (wandb, mlflow, ...) get the recipe's
name as the project. `train.tracker_options` passes keyword arguments to a tracker's
constructor, as accelerate's `init_kwargs` does.

Only the main process logs; accelerate's own `Accelerator(log_with=...)` keeps one set of
trackers per process lifetime, while a grid needs one run per cell, hence the classes are
used directly.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TRACKERS_DIR = "trackers"
INSTALL = {"tensorboard": "pip install 'arkd-bench[tensorboard]'"}
# The constructor keyword that names a run, for trackers whose first argument is the project.
RUN_NAME_KEYWORD = {"wandb": "name", "trackio": "name", "mlflow": "run_name", "swanlab": "experiment_name"}


class TrackerError(ValueError):
    """A tracker that is unknown or not installed; the message says what to install."""


def check_trackers(names: list[str]) -> None:
    """Raise TrackerError unless every tracker in `names` is known to accelerate and installed."""
    import importlib.util

    from accelerate.tracking import LOGGER_TYPE_TO_CLASS, get_available_trackers

    available = {str(t) for t in get_available_trackers()}
    for name in names:
        if name not in LOGGER_TYPE_TO_CLASS:
            raise TrackerError(f"train.log_with: unknown tracker {name!r}; accelerate knows "
                               f"{', '.join(sorted(LOGGER_TYPE_TO_CLASS))}")
        if name not in available and importlib.util.find_spec(name) is None:
            hint = INSTALL.get(name, f"pip install {name}")
            raise TrackerError(f"train.log_with: tracker {name!r} is not installed: {hint}")


def flat_config(config: dict[str, Any], prefix: str = "") -> dict[str, bool | int | float | str]:
    """Nested settings as `a/b` keys with values every tracker accepts (lists as JSON, None as "null")."""
    out: dict[str, bool | int | float | str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_config(value, f"{name}/"))
        elif isinstance(value, (bool, int, float, str)):
            out[name] = value
        else:
            out[name] = json.dumps(value, default=str)
    return out


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """The numbers of a train_log.jsonl record (its step is the tracker's step, not a value)."""
    return {key: float(value) for key, value in record.items()
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool)}


class CellTrackers:
    """The tracker runs of one cell: `log(record)` per training-log record, then `finish()`."""

    def __init__(self, names: list[str], *, logging_dir: Path, project: str, run_name: str,
                 config: dict[str, Any], options: dict[str, dict[str, Any]] | None = None) -> None:
        from accelerate.tracking import LOGGER_TYPE_TO_CLASS

        check_trackers(names)
        self.trackers = []
        for name in names:
            cls = LOGGER_TYPE_TO_CLASS[name]
            kwargs = dict((options or {}).get(name, {}))
            if cls.requires_logging_directory:  # the run is a folder under logging_dir
                tracker = cls(run_name, str(logging_dir), **kwargs)
            else:
                if name in RUN_NAME_KEYWORD:
                    kwargs.setdefault(RUN_NAME_KEYWORD[name], run_name)
                tracker = cls(project, **kwargs)
            tracker.start()
            tracker.store_init_configuration(flat_config(config))
            self.trackers.append(tracker)

    def log(self, record: dict[str, Any]) -> None:
        values = scalars(record)
        for tracker in self.trackers:
            tracker.log(values, step=record.get("step"))

    def finish(self) -> None:
        for tracker in self.trackers:
            tracker.finish()


@contextmanager
def cell_trackers(train, rundir, cell, recipe_name: str) -> Iterator[Callable[[dict[str, Any]], None] | None]:
    """Yield a per-record callback logging to the cell's trackers (None when `train.log_with`
    is empty or this process does not write); the runs are finished on leaving."""
    if not train.log_with or not rundir.writable:
        yield None
        return
    run_name = f"{cell.method}-seed{cell.seed}-{cell.id}"
    config = {**cell.summary(), "recipe": recipe_name, "run_name": run_name, "config": cell.config}
    trackers = CellTrackers(list(train.log_with), logging_dir=Path(rundir.path) / TRACKERS_DIR, project=recipe_name,
                            run_name=run_name, config=config, options=train.tracker_options)
    try:
        yield trackers.log
    finally:
        trackers.finish()
