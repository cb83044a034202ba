"""The hf source: real `datasets` reading local parquet, arrow, csv and save_to_disk data, mapped
exactly as the jsonl source maps the same records."""
import json
import sys

import pytest

datasets = pytest.importorskip("datasets", reason="the `datasets` extra: pip install 'arkd-bench[datasets]'")
pa = pytest.importorskip("pyarrow")
import pyarrow.parquet as pq

from arkd_bench.data import DataError, HfSource, JsonlSource


def dolly_rows(n):
    """Rows shaped like the hub's databricks/databricks-dolly-15k (its four columns)."""
    return [{"instruction": f"Question number {i}?", "context": "Some context." if i % 3 == 0 else "",
             "response": " ".join([f"answer{i}"] * (1 + i % 4)), "category": "open_qa"} for i in range(n)]


def minillm_rows(n, offset=0):
    return [{"prompt": f"Prompt {i}:", "output": f"the output {i}"} for i in range(offset, offset + n)]


def write_parquet(path, rows):
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def write_arrow(path, rows):
    """An Arrow IPC stream file, the format `save_to_disk` writes and the `arrow` builder reads."""
    table = pa.Table.from_pylist(rows)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return path


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_parquet_with_dolly_preset_matches_jsonl_of_the_same_records(tmp_path):
    rows = dolly_rows(30)
    options = {"preset": "dolly", "valid_size": 3, "test_size": 4, "split_seed": 7}
    hf = HfSource(path="parquet", data_files=str(write_parquet(tmp_path / "d.parquet", rows)), **options).load()
    jsonl = JsonlSource(path=str(write_jsonl(tmp_path / "d.jsonl", rows)), **options).load()
    assert hf.content_hash == jsonl.content_hash  # same examples, same order, same splits
    assert hf.sizes() == {"train": 23, "valid": 3, "test": 4}
    with_context = next(e for e in hf.train + hf.valid + hf.test if "Some context." in e.prompt)
    assert "### Context:\nSome context." in with_context.prompt
    assert with_context.meta == {"category": "open_qa"}
    assert hf.description.startswith("hf parquet data_files=")


def test_arrow_files_with_their_own_test_split_and_minillm_preset(tmp_path):
    train = write_arrow(tmp_path / "train.arrow", minillm_rows(12))
    test = write_arrow(tmp_path / "test.arrow", minillm_rows(5, offset=100))
    splits = HfSource(path="arrow", data_files={"train": "train.arrow", "test": "test.arrow"},
                      test_split="test", preset="minillm", valid_size=2).load(base_dir=tmp_path)
    assert [e.prompt for e in splits.test] == [f"Prompt {i}:" for i in range(100, 105)]  # kept in order
    assert splits.sizes() == {"train": 10, "valid": 2, "test": 5}
    assert {e.response for e in splits.train + splits.valid} == {f"the output {i}" for i in range(12)}
    assert train.exists() and test.exists()


def test_save_to_disk_folder_with_its_validation_and_test_splits(tmp_path):
    folder = tmp_path / "saved"
    datasets.DatasetDict({
        "train": datasets.Dataset.from_list(minillm_rows(10)),
        "validation": datasets.Dataset.from_list(minillm_rows(3, offset=50)),
        "test": datasets.Dataset.from_list(minillm_rows(4, offset=60)),
    }).save_to_disk(str(folder))
    splits = HfSource(path="saved", preset="minillm", valid_split="validation", test_split="test").load(tmp_path)
    assert splits.sizes() == {"train": 10, "valid": 3, "test": 4}
    assert splits.valid[0].prompt == "Prompt 50:"


def test_csv_filters_and_dedup_work_as_in_jsonl(tmp_path):
    rows = [{"prompt": f"q{i % 8}", "response": "one two three" if i % 2 else "short"} for i in range(16)]
    options = {"min_reference_words": 2, "valid_size": 0, "test_size": 1}
    (tmp_path / "d.csv").write_text("prompt,response\n" + "".join(f"{r['prompt']},{r['response']}\n" for r in rows))
    hf = HfSource(path="csv", data_files=str(tmp_path / "d.csv"), **options).load()
    jsonl = JsonlSource(path=str(write_jsonl(tmp_path / "d.jsonl", rows)), **options).load()
    assert hf.content_hash == jsonl.content_hash
    assert "dropped: duplicate 4, reference too short 8" in hf.description


def test_missing_field_names_the_file_split_and_row(tmp_path):
    path = write_parquet(tmp_path / "d.parquet", [{"question": "q", "answer": "a"}] * 3)
    with pytest.raises(DataError, match=r"d\.parquet\[train\]#0: missing field 'prompt' \(prompt_field\); "
                                        r"this record has fields: 'question', 'answer'"):
        HfSource(path="parquet", data_files=str(path)).load()


def test_unknown_split_lists_the_dataset_splits(tmp_path):
    path = write_parquet(tmp_path / "d.parquet", minillm_rows(6))
    with pytest.raises(DataError, match=r"no split 'test'; the dataset has: train"):
        HfSource(path="parquet", data_files=str(path), test_split="test", preset="minillm").load()


def test_unreadable_data_is_a_data_error_naming_the_path(tmp_path):
    with pytest.raises(DataError, match=r"hf path='parquet': datasets could not load it"):
        HfSource(path="parquet", data_files=str(tmp_path / "absent.parquet")).load()


def test_hub_name_offline_is_a_data_error(monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(DataError, match=r"hf path='someone/not-cached-here': datasets could not load it"):
        HfSource(path="someone/not-cached-here", revision="main").load()


def test_local_files_are_checked_before_a_run(tmp_path):
    source = HfSource(path="parquet", data_files={"train": "a.parquet", "test": ["b.parquet", "c-*.parquet"]})
    assert source.local_files() == {"data_files[0]": "a.parquet", "data_files[1]": "b.parquet"}
    assert HfSource(path="data/train.parquet").local_files() == {"path": "data/train.parquet"}
    assert HfSource(path="databricks/databricks-dolly-15k").local_files() == {}


def test_bad_options_are_refused_before_any_read():
    with pytest.raises(ValueError, match="split, valid_split and test_split must differ"):
        HfSource(path="x", split="train", test_split="train")
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        HfSource(path="x", data_dir="y")


def test_without_datasets_the_error_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "datasets", None)  # what an environment without the extra sees
    with pytest.raises(DataError, match=r"pip install 'arkd-bench\[datasets\]'"):
        HfSource(path="parquet", data_files=str(tmp_path / "d.parquet")).load()


def test_registered_as_a_builtin_dataset(builtin_plugins, tmp_path):
    path = write_parquet(tmp_path / "d.parquet", minillm_rows(8))
    source = builtin_plugins.create("dataset", "hf", path="parquet", data_files=str(path), preset="minillm",
                                    valid_size=1, test_size=1)
    assert source.load().sizes() == {"train": 6, "valid": 1, "test": 1}
