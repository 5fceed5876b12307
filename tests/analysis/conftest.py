"""Shared fixtures for the analysis tests: a simulated run folder."""

import numpy as np
import pytest

from analysis.simulate import simulate_embeddings, simulate_rows, write_run

SIMULATED_TASKS = [*(f"task{i:02d}" for i in range(6)), "nli", "pos"]


@pytest.fixture(scope="module")
def simulated_run(tmp_path_factory):
    """A run folder of 6 intermediates x 2 seeds x (nli, pos) x 3 languages, slope 8, with
    V-information rows and a task embedding per task.

    Module-scoped to keep the suite fast: tests must not change it.
    """
    rows = simulate_rows(np.random.default_rng(11), 8.0, 6, 2, languages=("en", "ov50", "fake"))
    run = tmp_path_factory.mktemp("simulated") / "run"
    embeddings = simulate_embeddings(np.random.default_rng(12), SIMULATED_TASKS)
    write_run(str(run), rows, status={"errored": {}, "skipped": {}}, embeddings=embeddings)
    return run
