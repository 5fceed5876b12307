"""Property: any mutation of a valid config is either a valid plan or one clean line, never a
traceback. Mutations drop, rename and retype keys at every depth of configs/demo.yaml."""

import copy
from collections import Counter

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from sweep.cli import app
from sweep.config import ConfigError, parse_config
from sweep.plan import build_plan, has_null_model
from tests.conftest import COUNTS, ROOT

DEMO = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())


def _paths(node, prefix=()):
    """Every key path of the nested config (list items included)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*prefix, key)
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield (*prefix, i)
            yield from _paths(value, (*prefix, i))


PATHS = list(_paths(DEMO))
JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.integers(-3, 3), max_size=4),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


@st.composite
def mutated(draw):
    config = copy.deepcopy(DEMO)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        parent = config
        try:
            for part in path[:-1]:
                parent = parent[part]
            last = path[-1]
            parent[last]
        except (KeyError, IndexError, TypeError):
            continue
        action = draw(st.sampled_from(["drop", "rename", "retype"]))
        if action == "drop":
            del parent[last]
        elif action == "rename" and isinstance(last, str):
            parent[last + draw(st.sampled_from(["s", "_", "x"]))] = parent.pop(last)
        else:
            parent[last] = draw(JUNK)
    return config


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_configs_give_a_plan_or_one_line(config):
    COUNTS["configs fuzzed"] += 1
    try:
        exp = parse_config(config, "demo.yaml")
    except ConfigError as err:
        message = str(err)
        assert message.startswith("demo.yaml: ") and "\n" not in message, message
        assert "Traceback" not in message
        return
    trials = build_plan(exp)
    kinds = Counter(t.kind for t in trials)
    assert kinds["intermediate"] == len(exp.seeds) * len(exp.intermediates)
    parents = len(exp.intermediates) + 1 + exp.controls.scratch
    assert kinds["target"] == len(exp.seeds) * parents * len(exp.targets)
    assert kinds["null"] == sum(has_null_model(exp, i) for i in exp.intermediates) * len(exp.seeds)


@settings(max_examples=25, deadline=None)
@given(mutated())
def test_cli_answers_exit_code_0_or_2(tmp_path_factory, config):
    COUNTS["configs fuzzed through the CLI"] += 1
    path = tmp_path_factory.mktemp("fuzz") / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(app, ["plan", str(path), "--power-reps", "0"])
    assert result.exit_code in (0, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    if result.exit_code == 2:
        assert result.output.count("\n") == 1 and result.output.startswith("error: ")
