"""`source: hf` with local data as `path`: a data file or folder relative to the recipe, read
offline, checked by `validate` (exists, splits, fields) once, with no progress bars leaking."""
import json

import pytest
import yaml
from typer.testing import CliRunner

datasets = pytest.importorskip("datasets", reason="the `datasets` extra: pip install 'arkd-bench[datasets]'")
pa = pytest.importorskip("pyarrow")
import pyarrow.parquet as pq

from arkd_bench.cli import app
from arkd_bench.data import DataError, HfSource

FIXTURES = __import__("pathlib").Path(__file__).parents[1] / "fixtures"


def rows(n, prompt="prompt", response="response", offset=0):
    return [{prompt: f"Question {i}?", response: f"answer number {i}"} for i in range(offset, offset + n)]


def write_parquet(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(records), path)
    return path


def write_recipe(folder, options):
    """tiny.yaml with its dataset read by `hf` with these options."""
    recipe = yaml.safe_load((FIXTURES / "tiny.yaml").read_text())
    recipe["datasets"] = [{"name": "local", "source": "hf", "options": options}]
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)


def test_a_parquet_file_relative_to_the_recipe_validates_and_loads_offline(tmp_path, monkeypatch, offline):
    write_parquet(tmp_path / "recipe" / "data" / "train.parquet", rows(40))
    recipe = write_recipe(tmp_path / "recipe", {"path": "data/train.parquet", "valid_size": 4, "test_size": 4})
    monkeypatch.chdir(tmp_path)  # not the recipe's folder: the path is the recipe's, not the shell's
    result = CliRunner().invoke(app, ["validate", str(recipe)])
    assert result.exit_code == 0, result.output
    splits = HfSource(path="data/train.parquet", valid_size=4, test_size=4).load(recipe.parent)
    assert splits.sizes() == {"train": 32, "valid": 4, "test": 4}
    assert "hf data/train.parquet" in splits.description


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".arrow"])
def test_other_data_files_are_read_by_the_builder_their_suffix_names(tmp_path, suffix, offline):
    records = rows(12)
    path = tmp_path / f"d{suffix}"
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    elif suffix == ".json":
        path.write_text(json.dumps(records))
    elif suffix == ".csv":
        path.write_text("prompt,response\n" + "".join(f"{r['prompt']},{r['response']}\n" for r in records))
    else:
        table = pa.Table.from_pylist(records)
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    source = HfSource(path=path.name, valid_size=2, test_size=2)
    assert source.local_problems(tmp_path) == []
    assert source.load(tmp_path).sizes() == {"train": 8, "valid": 2, "test": 2}
    wrong = HfSource(path=path.name, prompt_field="question")
    assert [option for option, _ in wrong.local_problems(tmp_path)] == ["prompt_field"]


def test_a_field_mapping_error_is_reported_once_by_validate_and_by_run(tmp_path):
    write_parquet(tmp_path / "data" / "train.parquet", rows(20, prompt="question", response="answer"))
    recipe = write_recipe(tmp_path, {"path": "data/train.parquet", "valid_size": 2, "test_size": 2})
    text = recipe.read_text().splitlines()
    for command in (["validate", str(recipe)], ["run", str(recipe), "--out", str(tmp_path / "out")]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 1, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 2, result.output  # prompt_field and response_field, each once
        assert lines[0].startswith(f"{recipe}:")
        assert ": datasets[0].options.prompt_field: data/train.parquet: no field 'prompt' (prompt_field); " \
               "the data has fields: 'question', 'answer'." in lines[0]
        assert "datasets[0].options.response_field: " in lines[1]
        line = int(lines[0].split(":")[1])
        assert "options" in text[line - 1] or "path" in text[line - 1]
        assert not (tmp_path / "out" / "cells").exists()  # nothing ran


def test_a_missing_local_file_or_folder_is_found_by_validate(tmp_path):
    for path, expect in (("data/absent.parquet", "no such file: "), ("./absent_folder", "no such file or folder: ")):
        recipe = write_recipe(tmp_path, {"path": path})
        result = CliRunner().invoke(app, ["validate", str(recipe)])
        assert result.exit_code == 1, result.output
        assert "datasets[0].options.path: " + expect in result.output, result.output
        assert str(tmp_path) in result.output  # resolved against the recipe's folder


def test_a_data_file_takes_no_data_files_name_or_revision(tmp_path):
    write_parquet(tmp_path / "d.parquet", rows(6))
    assert HfSource(path="d.parquet", revision="main").local_problems(tmp_path) == [
        ("revision", "path 'd.parquet' is a data file, which takes no revision")]
    with pytest.raises(DataError, match="is a data file, which takes no data_files"):
        HfSource(path="d.parquet", data_files="d.parquet").load(tmp_path)


def test_an_unknown_suffix_says_which_files_are_read(tmp_path):
    (tmp_path / "d.tsv").write_text("prompt\tresponse\n")
    [(option, message)] = HfSource(path="d.tsv").local_problems(tmp_path)
    assert option == "path" and ".parquet, .json, .jsonl, .csv, .arrow" in message


def test_a_save_to_disk_folder_is_checked_for_its_splits_and_fields(tmp_path, offline):
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows(8)),
                          "test": datasets.Dataset.from_list(rows(3, offset=100))}).save_to_disk(str(tmp_path / "saved"))
    assert HfSource(path="saved", test_split="test").local_problems(tmp_path) == []
    problems = dict(HfSource(path="saved", valid_split="validation", response_field="output").local_problems(tmp_path))
    assert problems["valid_split"].endswith("no split 'validation'; the data has: test, train")
    assert "no field 'output' (response_field); the data has fields: 'prompt', 'response'" in problems["response_field"]
    assert HfSource(path="./saved").local_files() == {}  # a folder, not a file: checked by local_problems
    datasets.Dataset.from_list(rows(5)).save_to_disk(str(tmp_path / "one"))
    assert HfSource(path="one", valid_size=1, test_size=1).local_problems(tmp_path) == []
    assert HfSource(path="one", valid_size=1, test_size=1).load(tmp_path).sizes() == {"train": 3, "valid": 1, "test": 1}


def test_a_folder_of_data_files_loads_offline(tmp_path, offline):
    write_parquet(tmp_path / "folder" / "train.parquet", rows(10))
    write_parquet(tmp_path / "folder" / "test.parquet", rows(3, offset=100))
    source = HfSource(path="folder", test_split="test", valid_size=2)
    assert source.local_problems(tmp_path) == []
    assert source.load(tmp_path).sizes() == {"train": 8, "valid": 2, "test": 3}


def test_builder_with_data_files_is_checked_too(tmp_path):
    write_parquet(tmp_path / "a.parquet", rows(4, prompt="q"))
    [(option, message)] = HfSource(path="parquet", data_files={"train": "a.parquet"}).local_problems(tmp_path)
    assert option == "prompt_field" and message.startswith("a.parquet: no field 'prompt'")
    assert HfSource(path="databricks/databricks-dolly-15k").local_problems(tmp_path) == []  # hub: left to the run


def test_no_progress_bar_or_log_leaks_from_a_load(tmp_path, capfd, offline):
    write_parquet(tmp_path / "fresh.parquet", rows(30))  # a new file: datasets generates its split here
    HfSource(path="fresh.parquet", valid_size=2, test_size=2).load(tmp_path)
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == "", captured
    assert not datasets.are_progress_bars_disabled()  # restored for whoever uses datasets next
