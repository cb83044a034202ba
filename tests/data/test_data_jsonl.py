"""The jsonl source: formats, presets, templates, splits, filters and every error path."""
import json

import pytest
from pydantic import ValidationError

from arkd_bench.data import DataError, JsonlSource
from arkd_bench.data.records import DOLLY_TEMPLATE


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def rows(n, prompt="prompt", response="response", words=3):
    return [{prompt: f"question {i}", response: " ".join([f"answer{i}"] * words)} for i in range(n)]


def load(**options):
    return JsonlSource(**options).load()


# --- formats and field mapping -------------------------------------------------------------

def test_jsonl_and_json_list_give_the_same_examples(tmp_path):
    data = rows(20)
    a = load(path=str(write_jsonl(tmp_path / "a.jsonl", data)), valid_size=2, test_size=3)
    (tmp_path / "b.json").write_text(json.dumps(data, indent=2))
    b = load(path=str(tmp_path / "b.json"), valid_size=2, test_size=3)
    assert a.content_hash == b.content_hash
    assert a.sizes() == {"train": 15, "valid": 2, "test": 3}


def test_relative_paths_resolve_against_base_dir(tmp_path):
    write_jsonl(tmp_path / "d.jsonl", rows(10))
    splits = JsonlSource(path="d.jsonl", valid_size=1, test_size=1).load(base_dir=tmp_path)
    assert splits.sizes()["train"] == 8


def test_list_field_gives_several_references(tmp_path):
    data = [{"prompt": f"q{i}", "output": [f"a{i}", f"b{i}"]} for i in range(5)]
    path = write_jsonl(tmp_path / "m.jsonl", data)
    splits = load(path=str(path), preset="minillm", valid_size=0, test_size=1)
    ex = splits.test[0]
    assert ex.references == (f"a{ex.prompt[1:]}", f"b{ex.prompt[1:]}")
    assert ex.response == ex.references[0]


def test_dolly_preset_folds_context_only_when_present(tmp_path):
    data = [
        {"instruction": "Say hi.", "context": "", "response": "hi there friend", "category": "open_qa"},
        {"instruction": "Sum it up.", "context": "A long text.", "response": "short text here",
         "category": "summarization"},
        {"instruction": "Third.", "context": None, "response": "third one here", "category": "x"},
    ]
    train = write_jsonl(tmp_path / "dolly.jsonl", data)
    splits = load(train=str(train), test=str(train), preset="dolly", dedup=False, valid_size=0)
    by_response = {ex.response: ex for ex in splits.test}
    assert by_response["hi there friend"].prompt == DOLLY_TEMPLATE.format(instruction="Say hi.")
    with_context = by_response["short text here"].prompt
    assert "Sum it up." in with_context and "A long text." in with_context
    assert "Context" not in by_response["third one here"].prompt
    assert by_response["short text here"].meta == {"category": "summarization"}


def test_custom_template_and_field_override(tmp_path):
    data = [{"q": f"q{i}", "a": f"a{i}", "ctx": "c" if i % 2 else ""} for i in range(6)]
    path = write_jsonl(tmp_path / "t.jsonl", data)
    splits = load(path=str(path), prompt_field="q", response_field="a", context_field="ctx",
                  template="Q: {instruction}\nA:", template_with_context="{context}\nQ: {prompt}\nA:",
                  valid_size=0, test_size=1)
    prompts = {ex.prompt for ex in splits.train + splits.test}
    assert "Q: q0\nA:" in prompts and "c\nQ: q1\nA:" in prompts


def test_a_user_template_also_serves_records_with_context(tmp_path):
    options = JsonlSource(path="x", preset="dolly", template="{instruction} / {context} ->").options
    assert options.template_with_context == "{instruction} / {context} ->"
    assert options.prompt_field == "instruction"  # the rest of the preset still applies


def test_preset_values_are_visible_in_the_options():
    options = JsonlSource(path="x.jsonl", preset="minillm").options
    assert (options.prompt_field, options.response_field, options.template) == ("prompt", "output", "{prompt}")


# --- splits, dedup, filters, truncation -------------------------------------------------------

def test_seeded_split_is_deterministic_and_disjoint(tmp_path):
    path = str(write_jsonl(tmp_path / "d.jsonl", rows(200)))
    a = load(path=path, valid_size=0.1, test_size=30, split_seed=1)
    assert a.content_hash == load(path=path, valid_size=0.1, test_size=30, split_seed=1).content_hash
    assert a.content_hash != load(path=path, valid_size=0.1, test_size=30, split_seed=2).content_hash
    assert a.sizes() == {"train": 150, "valid": 20, "test": 30}
    prompts = [{ex.prompt for ex in part} for part in (a.train, a.valid, a.test)]
    assert not (prompts[0] & prompts[1] or prompts[0] & prompts[2] or prompts[1] & prompts[2])
    assert len(set.union(*prompts)) == 200


def test_explicit_files_and_carved_valid(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", rows(50))
    test_rows = [{"prompt": "t1", "response": "x y z"}, {"prompt": "t2", "response": "x"}]
    test = write_jsonl(tmp_path / "test.jsonl", test_rows)
    splits = load(train=str(train), test=str(test), valid_size=5)
    assert [ex.prompt for ex in splits.test] == ["t1", "t2"]  # file order kept
    assert splits.sizes() == {"train": 45, "valid": 5, "test": 2}


def test_dedup_within_and_across_splits(tmp_path):
    data = rows(10) + rows(3)  # three exact repeats
    data.append({"prompt": "question 0", "response": "a different answer"})  # same prompt, new response: kept
    train = write_jsonl(tmp_path / "train.jsonl", data)
    test = write_jsonl(tmp_path / "test.jsonl", rows(1))  # also in train
    splits = load(train=str(train), test=str(test), valid_size=0)
    assert splits.sizes() == {"train": 10, "valid": 0, "test": 1}
    assert "duplicate 4" in splits.description
    assert splits.test[0] not in splits.train  # removed from train, never from test
    kept = load(train=str(train), test=str(test), valid_size=0, dedup=False)
    assert kept.sizes()["train"] == 14


def test_reference_length_filters_count_words(tmp_path):
    data = [{"prompt": f"q{i}", "response": " ".join(["w"] * i)} for i in range(1, 21)]
    path = str(write_jsonl(tmp_path / "l.jsonl", data))
    splits = load(path=path, min_reference_words=11, valid_size=0, test_size=2)
    lengths = [len(ex.response.split()) for ex in splits.train + splits.test]
    assert sorted(lengths) == list(range(11, 21))
    assert "reference too short 10" in splits.description
    capped = load(path=path, max_reference_words=5, valid_size=0, test_size=1)
    assert max(len(ex.response.split()) for ex in capped.train + capped.test) == 5
    with pytest.raises(ValidationError, match="min_reference_words"):
        JsonlSource(path=path, min_reference_words=6, max_reference_words=5)


def test_empty_prompts_and_responses_are_dropped(tmp_path):
    data = rows(6) + [{"prompt": "", "response": "x"}, {"prompt": "q", "response": "  "}]
    splits = load(path=str(write_jsonl(tmp_path / "e.jsonl", data)), valid_size=0, test_size=1)
    assert len(splits.train) + len(splits.test) == 6
    assert "empty 2" in splits.description


def test_max_examples_per_split(tmp_path):
    path = str(write_jsonl(tmp_path / "d.jsonl", rows(100)))
    full = load(path=path, valid_size=10, test_size=10)
    cut = load(path=path, valid_size=10, test_size=10, max_examples=5)
    assert cut.sizes() == {"train": 5, "valid": 5, "test": 5}
    assert cut.test == full.test[:5]
    per = load(path=path, valid_size=10, test_size=10, max_examples={"train": 20})
    assert per.sizes() == {"train": 20, "valid": 10, "test": 10}
    assert per.test == full.test  # truncating train never moves the evaluation sets


# --- errors ---------------------------------------------------------------------------------

def test_bad_json_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "a", "response": "b"}\n\n{"prompt": "c", "response": }\n')
    expected = rf"{path}:3: invalid JSON \(Expecting value at column 29\); each line must hold one JSON object"
    with pytest.raises(DataError, match=expected):
        load(path=str(path))


def test_missing_field_lists_the_record_fields(tmp_path):
    path = write_jsonl(tmp_path / "m.jsonl", rows(3) + [{"instruction": "x", "output": "y"}])
    with pytest.raises(DataError) as info:
        load(path=str(path))
    message = str(info.value)
    assert message.startswith(f"{path}:4: missing field 'prompt' (prompt_field)")
    assert "'instruction', 'output'" in message and "dolly" in message and "minillm" in message


def test_missing_response_field(tmp_path):
    path = write_jsonl(tmp_path / "m.jsonl", [{"prompt": "p", "output": "y"}])
    with pytest.raises(DataError, match=r"m.jsonl:1: missing field 'response' \(response_field\).*'prompt', 'output'"):
        load(path=str(path))


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n  \n")
    with pytest.raises(DataError, match=rf"{path}: file is empty; expected JSON Lines"):
        load(path=str(path))
    (tmp_path / "empty.json").write_text("[]")
    with pytest.raises(DataError, match="JSON list is empty"):
        load(path=str(tmp_path / "empty.json"))


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nope.jsonl: no such file"):
        JsonlSource(path="nope.jsonl").load(base_dir=tmp_path)


@pytest.mark.parametrize(
    "record, message",
    [
        ({"prompt": 3, "response": "x"}, r"field 'prompt' must be a string, got int"),
        ({"prompt": "p", "response": {"a": 1}},
         r"field 'response' must be a string or a non-empty list of strings, got dict"),
        ({"prompt": "p", "response": []}, r"field 'response' must be a string or a non-empty list"),
        ({"prompt": "p", "response": ["a", 2]}, r"field 'response' must be a string or a non-empty list"),
        (["p", "r"], r"expected a JSON object, got list"),
    ],
)
def test_wrong_types(tmp_path, record, message):
    path = write_jsonl(tmp_path / "w.jsonl", rows(2) + [record])
    with pytest.raises(DataError, match=rf"w.jsonl:3: {message}"):
        load(path=str(path))


def test_json_list_errors_name_the_line(tmp_path):
    path = tmp_path / "l.json"
    path.write_text('[\n  {"prompt": "a", "response": "b"},\n  {"prompt": 5, "response": "c"}\n]\n')
    with pytest.raises(DataError, match=rf"{path}:3: field 'prompt' must be a string"):
        load(path=str(path))
    path.write_text('[\n  {"prompt": "a", "response": "b"},\n  {"prompt": "c" "response": "d"}\n]\n')
    with pytest.raises(DataError, match=rf"{path}:3: invalid JSON"):
        load(path=str(path))


def test_one_json_object_gets_a_hint(tmp_path):
    path = tmp_path / "one.json"
    path.write_text('{\n  "prompt": "a",\n  "response": "b"\n}\n')
    with pytest.raises(DataError, match="one.json:1: invalid JSON.*holds one JSON object"):
        load(path=str(path))


def test_context_field_error_and_type(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"instruction": "i", "response": "r", "context": 7}])
    with pytest.raises(DataError, match=r"c.jsonl:1: field 'context' must be a string or null, got int"):
        load(path=str(path), preset="dolly")


def test_too_few_examples_for_the_split(tmp_path):
    path = write_jsonl(tmp_path / "s.jsonl", rows(3))
    with pytest.raises(DataError, match=r"s.jsonl: 3 examples are too few"):
        load(path=str(path), valid_size=1, test_size=2)
    path = write_jsonl(tmp_path / "z.jsonl", rows(3, words=1))
    with pytest.raises(DataError, match=r"z.jsonl: no examples left \(dropped: reference too short 3\)"):
        load(path=str(path), min_reference_words=2)


@pytest.mark.parametrize(
    "options, message",
    [
        ({}, "either `path`"),
        ({"path": "a", "train": "b"}, "either `path`"),
        ({"path": "a", "test": "b"}, "go with `train`"),
        ({"path": "a", "template": "{question}"}, r"unknown placeholder \{question\}; valid ones are \{instruction\}"),
        ({"path": "a", "template": "{prompt"}, "not a valid format string"),
        ({"path": "a", "context_field": "ctx"}, "template_with_context has no {context}"),
        ({"path": "a", "preset": "alpaca"}, "preset"),
        ({"path": "a", "valid_size": 1.5}, "valid_size"),
        ({"path": "a", "max_examples": {"training": 3}}, "max_examples"),
    ],
)
def test_option_errors(options, message):
    with pytest.raises(ValidationError, match=message):
        JsonlSource(**options)
