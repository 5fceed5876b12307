"""The per-task memory estimate: parameter counts against the real model class, the activation
formula by hand, and what accumulation buys XLM-R large on a 24 GB A10G."""

import pytest

from sweep.config import load_config
from trainers.encoder import xlmr_config
from trainers.memory import HUB_SHAPES, memory_lines, shape_of, task_memory, training_memory
from trainers.settings import ModelConfig


def test_parameter_count_matches_the_model_class():
    from transformers import XLMRobertaModel

    model = ModelConfig(hidden_size=48, num_hidden_layers=3, num_attention_heads=4, vocab_size=700)
    built = XLMRobertaModel(xlmr_config(model, model.vocab_size))
    assert shape_of(None, model).parameters == sum(p.numel() for p in built.parameters())
    # the published checkpoints' counts (XLMRobertaModel with its pooler)
    assert HUB_SHAPES["xlm-roberta-base"].parameters == 278_043_648
    assert HUB_SHAPES["xlm-roberta-large"].parameters == 559_890_432


def test_xlmr_large_qa_fits_an_a10g_only_with_accumulation():
    large = HUB_SHAPES["xlm-roberta-large"]
    whole = training_memory(large, batch_size=32, max_length=384)
    # by hand: 24 layers x 384 x 32 x 1024 x (34 + 5 x 16 x 384 / 1024 = 64) bytes
    assert whole.activations_gb == pytest.approx(24 * 384 * 32 * 1024 * 64 / 1e9)  # 19.33
    assert whole.static_gb == pytest.approx(16 * 559_890_432 / 1e9)  # 8.96
    assert whole.total_gb > 24  # does not fit an A10G
    micro = training_memory(large, batch_size=4, max_length=384)  # x accumulation 8
    assert micro.activations_gb == pytest.approx(whole.activations_gb / 8)
    assert micro.total_gb < 12  # 11.37 GB: fits, with room for the CUDA context
    assert training_memory(large, 32, 384, "no").activations_gb == pytest.approx(
        2 * whole.activations_gb
    )


def test_the_study_config_prints_each_task_with_its_accumulation(root):
    exp = load_config(root / "configs" / "xtreme_r.yaml")
    found = task_memory(exp)
    train, length, xnli = found["xnli"]
    assert (train.batch_size, train.gradient_accumulation_steps, length) == (2, 16, 128)
    base = HUB_SHAPES["xlm-roberta-base"]
    assert xnli.total_gb == pytest.approx(training_memory(base, 2, 128).total_gb)
    _, _, siqa = found["siqa"]  # 3 choices: 96 encoder rows per batch of 32
    assert siqa.activations_gb == pytest.approx(training_memory(base, 96, 128).activations_gb)
    assert found["tatoeba"][2] is None  # not trained
    assert set(found) >= {*exp.intermediates, *exp.targets}
    lines = memory_lines(exp)
    assert any(
        line.strip().startswith("xnli: 4.6 GB") and "batch 2 x accumulation 16" in line
        for line in lines
    )
