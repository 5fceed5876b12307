"""Shared fixtures for the analysis tests: a simulated run folder."""

import numpy as np
import pytest

from analysis.simulate import simulate_rows, write_run


@pytest.fixture(scope="module")
def simulated_run(tmp_path_factory):
    """A run folder of 6 intermediates x 2 seeds x (nli, pos) x 3 languages, slope 8.

    Module-scoped to keep the suite fast: tests must not change it.
    """
    rows = simulate_rows(np.random.default_rng(11), 8.0, 6, 2, languages=("en", "ov50", "fake"))
    run = tmp_path_factory.mktemp("simulated") / "run"
    write_run(str(run), rows, status={"errored": {}, "skipped": {}})
    return run
