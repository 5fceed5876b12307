"""Nothing unpickles files from storage, remote code never runs, checkpoints are safetensors."""

import re

from tests.conftest import ROOT

SOURCES = [p for d in ("sweep", "trainers", "analysis") for p in (ROOT / d).rglob("*.py")]


def test_no_unsafe_loading_in_our_code():
    assert len(SOURCES) > 10
    for path in SOURCES:
        text = path.read_text()
        assert not re.search(r"\bpickle\.loads?\(", text), path
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, (path, call)
        assert "trust_remote_code=True" not in text, path


def test_training_state_and_encoders_are_safetensors(tmp_path):
    from trainers.encoder import cached_pretrained
    from trainers.loop import train_and_evaluate
    from trainers.settings import ModelConfig, PretrainConfig, TrainConfig
    from trainers.tasks import SplitSizes, get_task, task_data
    from trainers.world import World, WorldConfig

    world = WorldConfig(sentences_per_language=300)
    model = ModelConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_length=48,
        vocab_size=600,
    )
    encoder = cached_pretrained(world, model, PretrainConfig(steps=20, batch_size=16))
    task = get_task("pos")
    data = task_data(World(world), task, SplitSizes(32, 16, 16), ("en",))
    train_and_evaluate(task, data, encoder, TrainConfig(epochs=1, batch_size=16), 0, 48, tmp_path)
    assert (tmp_path / "state" / "model.safetensors").exists()
    assert (tmp_path / "best.safetensors").exists()
    assert not list(tmp_path.rglob("*.bin")) or all(
        p.name.startswith(("optimizer", "scheduler")) for p in tmp_path.rglob("*.bin")
    )  # optimizer/scheduler state: Accelerate loads them with torch.load(weights_only=True)
    assert (encoder / "model.safetensors").exists() and not list(encoder.glob("*.bin"))
