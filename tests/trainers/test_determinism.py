"""The same config and seed give identical numbers on CPU; another seed gives others. On a GPU
only with `train.deterministic` (the GPU test skips without one)."""

import pytest
import torch

from tests.conftest import tiny_settings
from trainers.loop import train_and_evaluate
from trainers.settings import TrainConfig
from trainers.synthetic import task_data
from trainers.tasks import SplitSizes, get_task
from trainers.world import World

WORLD, _, _ = tiny_settings()


def test_same_seed_same_numbers_twice(tiny_encoder):
    encoder = tiny_encoder
    task = get_task("nli")
    data = task_data(World(WORLD), task, SplitSizes(96, 32, 32), ("en", "ov80"))
    config = TrainConfig(epochs=2, batch_size=16)
    runs = [
        train_and_evaluate(task, data, encoder, config, seed=s, max_length=48) for s in (5, 5, 6)
    ]
    assert runs[0].dev == runs[1].dev and runs[0].test == runs[1].test
    for name, tensor in runs[0].model.state_dict().items():
        assert torch.equal(tensor, runs[1].model.state_dict()[name]), name
    differs = any(
        not torch.equal(t, runs[2].model.state_dict()[n])
        for n, t in runs[0].model.state_dict().items()
    )
    assert differs  # the seed is really used


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_deterministic_gpu_runs_are_bit_identical(tiny_encoder):
    task = get_task("nli")
    data = task_data(World(WORLD), task, SplitSizes(96, 32, 32), ("en",))
    config = TrainConfig(epochs=2, batch_size=16, deterministic=True)
    runs = [
        train_and_evaluate(task, data, tiny_encoder, config, seed=5, max_length=48, cpu=False)
        for _ in range(2)
    ]
    assert runs[0].dev == runs[1].dev
    for name, tensor in runs[0].model.state_dict().items():
        assert torch.equal(tensor, runs[1].model.state_dict()[name]), name
