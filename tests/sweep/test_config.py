import subprocess
import sys

import pytest
import yaml
from typer.testing import CliRunner

from sweep.cli import app
from sweep.config import ConfigError, load_config, parse_config

MINIMAL = {
    "name": "t",
    "intermediates": ["topic_easy"],
    "targets": ["nli"],
    "languages": ["en", "ov80"],
    "seeds": [0],
}


def test_demo_config_is_valid_and_frozen(root):
    exp = load_config(root / "configs" / "demo.yaml")
    assert exp.intermediates == ("topic_easy", "topic_hard")
    assert len(exp.seeds) == 2 and len(exp.targets) == 2 and len(exp.languages) == 5
    with pytest.raises(Exception, match="frozen"):
        exp.name = "other"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"train": {"lrr": 1e-3}},
            "t.yaml: train.lrr: unknown key; did you mean 'lr'? (got 0.001)",
        ),
        ({"train": {"lr": 3}}, "t.yaml: train.lr: Input should be less than 1 (got 3)"),
        ({"seeds": [0, 0]}, "t.yaml: seeds: duplicates [0]; list each once (got [0, 0])"),
        ({"seeds": [-1]}, "t.yaml: seeds.0: Input should be greater than or equal to 0 (got -1)"),
        (
            {"seeds": []},
            "t.yaml: seeds: Tuple should have at least 1 item after validation, not 0 (got [])",
        ),
        (
            {"targets": ["xnl"]},
            "t.yaml: targets: unknown target task 'xnl'; did you mean 'xnli'? (got ['xnl'])",
        ),
        ({"languages": ["en", "ov8"]}, "languages: unknown language 'ov8'; did you mean 'ov80'?"),
        ({"name": "../escape"}, "t.yaml: name: String should match pattern"),
        ({"name": "a..b"}, "t.yaml: name: must not contain '..'"),
        (
            {"resources": {"cpu": 0}},
            "t.yaml: resources.cpu: Input should be greater than or equal to 1",
        ),
        ({"intermediates": ["none"]}, "'none' is added by itx"),
    ],
)
def test_bad_values_give_one_line_naming_key_and_value(change, expected):
    with pytest.raises(ConfigError) as info:
        parse_config({**MINIMAL, **change}, "t.yaml")
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_missing_key_is_reported_as_required():
    raw = dict(MINIMAL)
    del raw["seeds"]
    with pytest.raises(ConfigError, match=r"^t.yaml: seeds: required$"):
        parse_config(raw, "t.yaml")


def test_cli_exits_2_with_one_line_and_no_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**MINIMAL, "seedz": 3}))
    result = CliRunner().invoke(app, ["plan", str(bad)])
    assert result.exit_code == 2
    assert (
        result.output.strip() == f"error: {bad}: seedz: unknown key; did you mean 'seeds'? (got 3)"
    )
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    result = CliRunner().invoke(app, ["run", str(broken)])
    assert result.exit_code == 2 and "not valid YAML" in result.output


def test_config_errors_come_before_heavy_imports(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**MINIMAL, "seeds": "zero"}))
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom sweep.cli import app\n"
        f"r = CliRunner().invoke(app, ['run', {str(bad)!r}])\n"
        "heavy = [m for m in ('torch', 'ray', 'transformers') if m in sys.modules]\n"
        "print(r.exit_code, heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "2 []"


def test_plan_prints_counts_per_stage(root):
    result = CliRunner().invoke(app, ["plan", str(root / "configs" / "demo.yaml")])
    assert result.exit_code == 0, result.output
    # 2 intermediates x 2 seeds; (2 + none + scratch) x 2 seeds x 2 targets
    for line in ("pretrain: 1", "intermediate: 4", "target: 16", "trials: 21", "dag_depth: 3"):
        assert f"  {line}\n" in result.output


def test_run_refuses_a_trial_bigger_than_this_machine(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump({**MINIMAL, "resources": {"pretrain_cpu": 256}}))
    result = CliRunner().invoke(app, ["run", str(path), "--storage", str(tmp_path / "store")])
    assert result.exit_code == 2
    assert "asks for 256 CPUs but this machine has" in result.output
    assert not (tmp_path / "store").exists()  # nothing started, nothing written
