"""Nothing unpickles files from storage, remote code never runs, checkpoints are safetensors."""

import re

from tests.conftest import ROOT, tiny_settings

SOURCES = [p for d in ("sweep", "trainers", "analysis") for p in (ROOT / d).rglob("*.py")]


def test_no_unsafe_loading_in_our_code():
    assert len(SOURCES) > 10
    for path in SOURCES:
        text = path.read_text()
        assert not re.search(r"\bpickle\.loads?\(", text), path
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, (path, call)
        assert "trust_remote_code=True" not in text, path


def test_training_state_and_encoders_are_safetensors(tmp_path, tiny_encoder):
    from trainers.loop import train_and_evaluate
    from trainers.settings import TrainConfig
    from trainers.synthetic import task_data
    from trainers.tasks import SplitSizes, get_task
    from trainers.world import World

    world, _, _ = tiny_settings()
    encoder = tiny_encoder
    task = get_task("pos")
    data = task_data(World(world), task, SplitSizes(32, 16, 16), ("en",))
    config = TrainConfig(epochs=1, batch_size=16)
    train_and_evaluate(task, data, encoder, config, seed=0, max_length=48, state_dir=tmp_path)
    assert (tmp_path / "state" / "model.safetensors").exists()
    assert (tmp_path / "best.safetensors").exists()
    assert not list(tmp_path.rglob("*.bin")) or all(
        p.name.startswith(("optimizer", "scheduler")) for p in tmp_path.rglob("*.bin")
    )  # optimizer/scheduler state: Accelerate loads them with torch.load(weights_only=True)
    assert (encoder / "model.safetensors").exists() and not list(encoder.glob("*.bin"))
