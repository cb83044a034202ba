"""The accelerate configs in examples/accelerate/ load with accelerate's own config classes, pass
its launcher's checks, and build its FSDP and DeepSpeed plugins with the settings their comments
promise, all offline and without a GPU (nothing is launched, and DeepSpeed is not needed)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from arkd_bench.recipe.schema import TrainSpec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "accelerate"


@pytest.fixture
def clean_environ():
    """The plugins read (and write) the environment the launcher would give the processes."""
    before = dict(os.environ)
    yield os.environ
    os.environ.clear()
    os.environ.update(before)


def launcher_env(name: str) -> tuple[dict[str, str], object]:
    """(the environment `accelerate launch --config_file <name> -m arkd_bench run recipe.yaml`
    gives its processes, the config as accelerate loaded it)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    args = launch_command_parser().parse_args(["--config_file", str(EXAMPLES / name), "-m", "arkd_bench", "run",
                                               "recipe.yaml"])
    args, config, _ = _validate_launch_command(args)
    if args.use_deepspeed:  # as launch_command does before the DeepSpeed launcher
        args.deepspeed_fields_from_accelerate_config = ",".join(config.deepspeed_config)
        env = prepare_deepspeed_cmd_env(args)[1]
    else:
        env = prepare_multi_gpu_env(args)
    return {k: v for k, v in env.items() if k.startswith(("ACCELERATE_", "FSDP_"))}, config


@pytest.mark.parametrize("name", ["fsdp.yaml", "deepspeed_zero3.yaml"])
def test_each_config_is_yaml_that_accelerate_loads_and_says_it_was_not_run_on_a_gpu(name):
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file

    text = (EXAMPLES / name).read_text()
    data = yaml.safe_load(text)
    for key in ("compute_environment", "distributed_type", "mixed_precision", "use_cpu", "debug", "num_processes"):
        assert key in data, key  # BaseConfig's fields without a default, and the process count
    config = load_config_from_file(str(EXAMPLES / name))
    assert isinstance(config, ClusterConfig) and config.num_processes == data["num_processes"]
    assert "NOT RUN ON A GPU" in text and "accelerate launch --config_file examples/accelerate/" + name in text


def test_the_fsdp_config_builds_a_full_shard_fsdp2_plugin_wrapping_transformer_layers(clean_environ):
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin
    from torch.distributed.fsdp import StateDictType
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    env, config = launcher_env("fsdp.yaml")
    assert config.distributed_type == DistributedType.FSDP and env["ACCELERATE_USE_FSDP"] == "true"
    clean_environ.update(env)
    plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True
    assert plugin.transformer_cls_names_to_wrap == [LlamaDecoderLayer.__name__]
    assert plugin.auto_wrap_policy.__name__ == "transformer_auto_wrap_policy"
    assert plugin.state_dict_type == StateDictType.FULL_STATE_DICT
    assert plugin.activation_checkpointing is False  # the recipe's train.gradient_checkpointing instead


def test_the_deepspeed_config_builds_zero3_with_the_recipes_accumulation_and_clipping(clean_environ):
    from accelerate.utils import DeepSpeedPlugin, DistributedType

    env, config = launcher_env("deepspeed_zero3.yaml")
    assert config.distributed_type == DistributedType.DEEPSPEED
    clean_environ.update(env)
    ds = DeepSpeedPlugin().deepspeed_config
    assert ds["zero_optimization"]["stage"] == 3
    # the run refuses a count other than train.grad_accum (train/loop.py check_accumulation)
    assert ds["gradient_accumulation_steps"] == TrainSpec().grad_accum
    assert ds["gradient_clipping"] == TrainSpec().grad_clip  # the engine clips, not the run
    # accelerator.get_state_dict (train.save_student, checkpoints) needs the gathered weights
    assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
