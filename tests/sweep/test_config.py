import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from sweep.cli import app
from sweep.config import ConfigError, load_config, parse_config
from trainers.tasks import TARGETS

MINIMAL = {
    "name": "t",
    "intermediates": ["topic_easy"],
    "targets": ["nli"],
    "languages": ["en", "ov80"],
    "seeds": [0],
}


def test_demo_config_is_valid_and_frozen(root):
    exp = load_config(root / "configs" / "demo.yaml")
    assert exp.intermediates == ("topic_easy", "topic_mid", "topic_hard")
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
        (
            {"languages": ["en", "ov8"]},
            "t.yaml: languages: unknown language 'ov8'; did you mean 'ov80'?",
        ),
        ({"name": "../escape"}, "t.yaml: name: '../escape' is not a valid name: letters,"),
        ({"name": "a..b"}, "t.yaml: name: 'a..b' is not a valid name"),
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
    demo = str(root / "configs" / "demo.yaml")
    result = CliRunner().invoke(app, ["plan", demo, "--power-reps", "0"])
    assert result.exit_code == 0, result.output
    # 3 intermediates x 2 seeds, each with its null model; (3 + none + scratch) x 2 x 2 targets
    for line in ("pretrain: 1", "intermediate: 6", "null: 6", "target: 20", "trials: 33"):
        assert f"  {line}\n" in result.output


def test_run_refuses_a_trial_bigger_than_this_machine(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump({**MINIMAL, "resources": {"pretrain_cpu": 256}}))
    result = CliRunner().invoke(app, ["run", str(path), "--storage", str(tmp_path / "store")])
    assert result.exit_code == 2
    assert "asks for 256 CPUs but this machine has" in result.output
    assert not (tmp_path / "store").exists()  # nothing started, nothing written


HUB = {
    "name": "real",
    "encoder": {"name": "FacebookAI/xlm-roberta-base"},
    "intermediates": ["mnli"],
    "targets": ["xnli"],
    "languages": ["all"],
    "seeds": [0],
    "data": {"source": "hub", "train": None, "dev": None, "test": None},
}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"encoder": None}, "encoder: required with data.source: hub"),
        ({"targets": ["nli"]}, "task 'nli' exists only in the synthetic world"),
        ({"languages": ["xx"]}, "languages: unknown language 'xx'"),
        ({"difficulty": {"external": {"qqp": 0.3}}}, "'qqp' is not an intermediate of this sweep"),
        ({"tasks": {"xquad": {"max_length": 1024}}}, "exceeds the encoder's 512 positions"),
        ({"tasks": {"xquad": {"train": {"lrr": 1}}}}, "lrr"),
        (
            {"mixtures": {"mix": {"tasks": ["mnli", "squad"]}}, "intermediates": ["mix"]},
            "differ in format or labels",
        ),
    ],
)
def test_real_study_settings_are_checked_in_one_line(change, expected):
    with pytest.raises(ConfigError) as err:
        parse_config({**HUB, **change}, "r.yaml")
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_synthetic_study_refuses_real_only_tasks_and_hub_encoders():
    with pytest.raises(ConfigError, match="'mnli' has real data only"):
        parse_config({**MINIMAL, "intermediates": ["mnli"]}, "t.yaml")
    with pytest.raises(ConfigError, match="cannot read the synthetic world"):
        parse_config({**MINIMAL, "encoder": {"name": "x"}}, "t.yaml")


def test_task_options_and_mixtures_resolve():
    exp = parse_config(
        {
            **HUB,
            "intermediates": ["nli_mix"],
            "mixtures": {"nli_mix": {"tasks": ["mnli", "anli_plus"], "temperature": 2}},
            "tasks": {
                "tatoeba": {"layer": 7, "before": ["xquad"]},
                "xnli": {"train": {"lr": 3e-5}},
            },
            "targets": ["xnli", "tatoeba"],
        }
    )
    assert exp.task("tatoeba").layer == 7 and exp.task("tatoeba").before == ("xquad",)
    assert exp.train_for("xnli").lr == 3e-5 and exp.train_for("tatoeba").lr == exp.train.lr
    mix = exp.task("nli_mix")
    assert mix.format == "classification" and set(mix.train_data) == {"anli", "mnli", "snli"}
    assert exp.languages_of(exp.task("xnli")) == exp.task("xnli").languages  # "all"


def test_unreachable_data_stops_the_run_before_training_with_one_line(root, tmp_path):
    from tests.trainers.test_sources import fixture_override

    hub = root / "tests" / "fixtures" / "hub"
    xnli = fixture_override(hub / "xnli")
    xnli["data_files"]["test"] = str(tmp_path / "nowhere" / "test.{lang}.jsonl")  # gone
    sources = {"mnli": fixture_override(hub / "mnli"), "xnli": xnli}
    config = tmp_path / "real.yaml"
    raw = {**HUB, "storage": str(tmp_path / "runs"), "languages": ["de"]}
    config.write_text(yaml.safe_dump({**raw, "data": {**HUB["data"], "sources": sources}}))
    result = CliRunner().invoke(app, ["run", str(config)])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    assert "'xnli'" in errors[0] and "test" in errors[0] and "lang de" in errors[0]
    assert "data.sources.xnli" in errors[0] and "docs/data.md" in errors[0]
    assert not (tmp_path / "runs" / "real" / "results").exists()  # nothing trained


def test_real_study_plans_offline(root):
    config = str(root / "configs" / "xtreme_r.yaml")
    result = CliRunner().invoke(app, ["plan", config, "--power-reps", "0"])
    assert result.exit_code == 0, result.output
    # every registered real target (10 today), 13 intermediates + the `none` baseline, 3 seeds
    real = [t for t in TARGETS if t.source]
    exp = load_config(root / "configs" / "xtreme_r.yaml")
    assert set(exp.targets) == {t.name for t in real}  # the real study covers every target
    assert f"intermediate: {13 * 3}" in result.output
    assert f"target: {(13 + 1) * 3 * len(real)}" in result.output
    for name in ("anli_plus", "commonsenseqa", "siqa", "rte", "none"):
        assert name in result.output


def test_a_renamed_key_shows_its_did_you_mean_not_the_missing_one():
    raw = {k: v for k, v in MINIMAL.items() if k != "seeds"} | {"seed": [0]}
    with pytest.raises(ConfigError) as info:
        parse_config(raw, "t.yaml")
    # before: "t.yaml: seeds: required [+1 more]" (the missing key came first)
    assert str(info.value) == "t.yaml: seed: unknown key; did you mean 'seeds'? (got [0]) [+1 more]"


def test_an_error_of_a_whole_section_quotes_the_value_not_the_config(root):
    raw = yaml.safe_load((root / "configs" / "demo.yaml").read_text())
    raw["languages"] = ["en", "ov80", "ov50", "sov50", "fak"]
    with pytest.raises(ConfigError) as info:
        parse_config(raw, "demo.yaml")
    # before, the whole config followed as "(got {...})": 1,044 characters in all; then
    # "demo.yaml: (top level): languages: ..." (the check's section, not its key)
    assert str(info.value) == "demo.yaml: languages: unknown language 'fak'; did you mean 'fake'?"


# Checks that look at several keys at once (model validators): the error names the key(s) it
# concerns and quotes one value, never the section (the top level: the whole config).
SEVERAL_KEYS = [
    (
        MINIMAL,
        {"resources": {"cpu": 4, "num_cpus": 2}},
        "resources.cpu, resources.num_cpus: cpu=4 exceeds num_cpus=2: no trial could ever be"
        " placed",
    ),
    (
        MINIMAL,
        {"intermediates": ["mnli"]},
        "intermediates, data.source: task 'mnli' has real data only (no synthetic version); set"
        " data.source: hub, or pick a task with a synthetic version",
    ),
    (
        MINIMAL,
        {"encoder": {"name": "x" * 500}},
        "encoder, data.source: a hub encoder cannot read the synthetic world (its own tokenizer"
        " is built there); remove encoder, or set data.source: hub (got 'xxxxxxxxxxxxxxxxxxxxxxxx"
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...x' (502 chars))",
    ),
    (
        MINIMAL,
        {"languages": ["ov80", "fake"]},
        "languages: must include 'en' (the source language) (got ['ov80', 'fake'])",
    ),
    (
        MINIMAL,
        {"data": {"dev": None}},
        "data.dev: required for synthetic data (null: real data only)",
    ),
    (
        MINIMAL,
        {"intermediates": ["topic_eazy"]},
        "intermediates: unknown intermediate task 'topic_eazy'; did you mean 'topic_easy'?",
    ),
    (
        HUB,
        {"targets": ["xnli", "nli"]},
        "targets, data.source: task 'nli' exists only in the synthetic world; set data.source:"
        " synthetic, or pick a task with a real data set",
    ),
    (
        HUB,
        {"tasks": {"xquad": {"max_length": 1024}}},
        "tasks.xquad.max_length: exceeds the encoder's 512 positions (model.max_length for the"
        " synthetic encoder) (got 1024)",
    ),
    (
        HUB,
        {"mixtures": {"mix": {"tasks": ["mnli", "squad"]}}, "intermediates": ["mix"]},
        "mixtures.mix.tasks: these tasks differ in format or labels; a mixture trains one head,"
        " so its tasks must share both (got ['mnli', 'squad'])",
    ),
    (
        HUB,
        {"mixtures": {"mnli": {"tasks": ["mnli", "snli"]}}},
        "mixtures.mnli: 'mnli' is a registered task; pick another name",
    ),
    (
        HUB,
        {"difficulty": {"external": {"qqp": 0.3}}},
        "difficulty.external.qqp: 'qqp' is not an intermediate of this sweep; allowed: mnli",
    ),
    (
        HUB,
        {"encoder": None},
        "encoder: required with data.source: hub (e.g. FacebookAI/xlm-roberta-base)",
    ),
]


@pytest.mark.parametrize(
    ("base", "change", "expected"), SEVERAL_KEYS, ids=[e.split(":")[0] for *_, e in SEVERAL_KEYS]
)
def test_a_check_of_several_keys_names_them_and_quotes_one_value(tmp_path, base, change, expected):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**base, **change}))
    result = CliRunner().invoke(app, ["plan", str(path)])
    assert result.exit_code == 2
    assert result.output == f"error: {path}: {expected}\n"  # one line, nothing else
    assert len(expected) <= 300  # bounded: a 500-character value is quoted as an excerpt


def test_cli_renamed_seeds_key_shows_the_did_you_mean(tmp_path):
    path = tmp_path / "c.yaml"
    raw = {k: v for k, v in MINIMAL.items() if k != "seeds"} | {"seed": [0, 1]}
    path.write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(app, ["run", str(path), "--storage", str(tmp_path / "runs")])
    assert result.exit_code == 2
    expected = f"error: {path}: seed: unknown key; did you mean 'seeds'? (got [0, 1]) [+1 more]\n"
    assert result.output == expected
    assert not (tmp_path / "runs").exists()


def test_version_prints_the_installed_distribution():
    import importlib.metadata

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"itx {importlib.metadata.version('itx')}\n"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"train": {"mixed_precision": "fp32"}},
            "train.mixed_precision: Input should be 'no', 'bf16' or 'fp16' (got 'fp32')",
        ),
        ({"tracking": {"mlflow": {}}}, "tracking.mlflow.tracking_uri: required"),
        ({"tracking": {"wandb": {}}}, "tracking.wandb: unknown key; allowed: mlflow"),
    ],
)
def test_choices_list_what_is_allowed(change, expected):
    with pytest.raises(ConfigError, match=r"^t\.yaml: ") as info:
        parse_config({**MINIMAL, **change}, "t.yaml")
    assert expected in str(info.value)


SHIPPED = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))
assert {"demo.yaml", "demo_full.yaml", "xtreme_r.yaml"} <= {p.name for p in SHIPPED}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_config_validates_and_plans(path):
    from sweep.plan import build_plan

    exp = load_config(path)
    trials = build_plan(exp)
    parents = len(exp.intermediates) + 1 + exp.controls.scratch  # + none (+ scratch)
    counts = {kind: sum(t.kind == kind for t in trials) for kind in ("pretrain", "intermediate")}
    assert counts == {"pretrain": 1, "intermediate": len(exp.intermediates) * len(exp.seeds)}
    targets = sum(t.kind == "target" for t in trials)
    assert targets == parents * len(exp.seeds) * len(exp.targets)
    assert {t.kind for t in trials} <= {"pretrain", "intermediate", "null", "stage", "target"}
    assert len({t.key for t in trials}) == len(trials)  # no two trials share an identity
    result = CliRunner().invoke(app, ["plan", str(path), "--power-reps", "0"])
    assert result.exit_code == 0, result.output
    assert f"trials: {len(trials)}" in result.output
