"""write_report: files, self-contained HTML, and numbers that come from the store."""

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.analyse import analyse
from analysis.models import NEEDS_THREE
from analysis.render import render_markdown
from analysis.report import write_report
from analysis.results import load_run
from analysis.sections import build_blocks
from analysis.simulate import simulate_rows, write_run

EXPECTED = {
    "report.md",
    "report.html",
    "tables/gains.csv",
    "tables/baselines.csv",
    "tables/difficulty.csv",
}


@pytest.fixture(scope="module")
def reported(simulated_run):
    """The simulated run with its report written once; returns the written paths."""
    return write_report(str(simulated_run))


def test_report_files_and_self_contained_html(simulated_run, reported):
    written = reported
    assert set(written) >= EXPECTED
    for path in written.values():
        assert (simulated_run / path.removeprefix(f"{simulated_run}/")).is_file()
    html = (simulated_run / "report.html").read_text()
    # by target, by target and language, scatter, overlap, forest
    assert html.count("data:image/png;base64,") == 5
    assert "http" not in html
    assert "<script" not in html
    assert "<link" not in html
    assert re.search(r"\bsrc=\"(?!data:)", html) is None


# A run small enough to work by hand: 3 intermediates x 2 seeds x nli in en and ov50.
# Intermediate English dev accuracy (4 labels, chance 0.25) -> difficulty 1 - (s - 0.25) / 0.75:
DEV = {"task00": 0.85, "task01": 0.70, "task02": 0.325}  # difficulty 0.2, 0.4, 0.9
# The `none` baseline's test accuracy, per seed (each seed its own: pairing is by seed).
NONE = {("en", 0): 0.80, ("ov50", 0): 0.60, ("en", 1): 0.82, ("ov50", 1): 0.62}
# Gain in points on ov50 (the zero-shot language) per (intermediate, seed); English gains +1.
GAIN = {
    ("task00", 0): 6.0, ("task00", 1): 4.0,  # mean 5
    ("task01", 0): 3.0, ("task01", 1): 5.0,  # mean 4
    ("task02", 0): 2.0, ("task02", 1): 0.0,  # mean 1
}  # fmt: skip
HOSTILE = "<script>alert(1)</script> [x](javascript:alert(1)) **not bold** a|b"


def _hand_rows() -> pd.DataFrame:
    rows = simulate_rows(
        np.random.default_rng(0), 0.0, 3, 2, ("nli",), ("en", "ov50"), tagging=(),
        v_information=False,
    )  # fmt: skip
    for i, r in rows.iterrows():
        if r["kind"] == "intermediate":
            rows.loc[i, "value"] = DEV[r["intermediate"]]
        elif r["intermediate"] == "none":
            rows.loc[i, "value"] = NONE[r["language"], r["seed"]]
        elif r["intermediate"] in DEV:
            gain = GAIN[r["intermediate"], r["seed"]] if r["language"] == "ov50" else 1.0
            rows.loc[i, "value"] = NONE[r["language"], r["seed"]] + gain / 100
    return rows


@pytest.fixture(scope="module")
def hand_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("hand") / "run"
    write_run(str(run), _hand_rows(), status={"errored": {"oops": HOSTILE}, "skipped": {}})
    write_report(str(run))
    return run


def test_report_states_the_hand_worked_two_stage_estimate_first(hand_run):
    # by hand: mean difficulty x = (0.2, 0.4, 0.9), mean ov50 gain y = (5, 4, 1) (English out);
    # Sxx = 0.09 + 0.01 + 0.16 = 0.26, Sxy = -0.3 * 5/3 - 0.1 * 2/3 - 0.4 * 7/3 = -1.5,
    # slope = -1.5 / 0.26 = -75/13 = -5.769; SSE = Syy - Sxy^2 / Sxx = 78/9 - 2.25/0.26 = 1/78
    # on 1 df, SE = sqrt(1/78 / 0.26) = 0.2221, t = -15 sqrt(3) = -25.98; t(1) is Cauchy:
    # p = 1 - 2/pi atan|t| and the 97.5% point is tan(0.475 pi) = 12.706.
    slope, se = -75 / 13, math.sqrt(1 / 78 / 0.26)
    half = math.tan(0.475 * math.pi) * se
    p = 1 - 2 / math.pi * math.atan(15 * math.sqrt(3))
    assert (round(slope - half, 2), round(slope + half, 2), round(p, 4)) == (-8.59, -2.95, 0.0245)
    md = (hand_run / "report.md").read_text()
    answer = md.split("## Design")[0]
    assert (
        "**Effect of difficulty: -5.77 points of gain per unit of difficulty** (95% CI -8.59 to "
        "-2.95; two-stage OLS of mean gain on mean difficulty over 3 intermediates, t(1) = -25.98, "
        "p = 0.0245; exact permutation p = 0.167 over all 6 orderings of difficulty across "
        "intermediates). The interval excludes 0: harder intermediate tasks went with smaller "
        "gains."
    ) in answer
    # x and y fall together, so only the observed one of the 3! = 6 orderings is as extreme
    # (the reverse gives |Sxy| = 1.3 < 1.5): p = 1/6, which no ordering can beat
    assert "can give a permutation p below 0.167 (computed over all 6 orderings)" in answer
    assert "over 2 seeds, 1 target and 1 zero-shot language (ov50;" in answer
    assert "Wald" not in answer  # the miscalibrated p never makes the headline
    assert "Satterthwaite" in md  # the mixed model is tested with Satterthwaite df, not Wald z
    two_stage_part = md.split("## Two-stage test")[1].split("##")[0]
    assert "| task00 | 0.200 | 5.00 |" in two_stage_part
    assert "| task02 | 0.900 | 1.00 |" in two_stage_part
    assert "| slope (points per unit difficulty) | -5.769 |" in two_stage_part
    assert "| standard error | 0.222 |" in two_stage_part
    assert "| intercept (gain at difficulty 0) | 6.218 |" in two_stage_part  # 10/3 + 75/26


def test_report_tables_hold_the_hand_worked_gains(hand_run):
    gains = pd.read_csv(hand_run / "tables" / "gains.csv").set_index(
        ["intermediate", "seed", "language"]
    )
    assert len(gains) == 12  # 3 intermediates x 2 seeds x 2 languages
    for (name, seed), gain in GAIN.items():
        # against the same seed's baseline: the other seed's would be off by 2 points
        assert gains.loc[(name, seed, "ov50"), "gain"] == pytest.approx(gain)
        assert gains.loc[(name, seed, "en"), "gain"] == pytest.approx(1.0)
    difficulty = pd.read_csv(hand_run / "tables" / "difficulty.csv").groupby("intermediate")
    assert difficulty["difficulty"].mean().to_dict() == pytest.approx(
        {"task00": 0.2, "task01": 0.4, "task02": 0.9}
    )
    baselines = pd.read_csv(hand_run / "tables" / "baselines.csv").set_index("language")
    # x100, mean over the two seeds: en (80 + 82) / 2, ov50 (60 + 62) / 2
    assert baselines.loc["en", "none"] == pytest.approx(81.0)
    assert baselines.loc["ov50", "none"] == pytest.approx(61.0)
    assert baselines.loc["ov50", "task01"] == pytest.approx(65.0)  # 61 + mean gain 4
    assert {"chance", "majority", "scratch"} <= set(baselines.columns)


def test_store_text_is_shown_never_interpreted(hand_run):
    md = (hand_run / "report.md").read_text()
    # an errored trial's reason, backslash-escaped: every Markdown viewer shows it as written
    assert "\\<script\\>alert(1)\\</script\\> \\[x\\](javascript:alert(1)) \\*\\*not bold" in md
    html = (hand_run / "report.html").read_text()
    # HTML from that Markdown: the same characters as text, no element, no link
    assert "<script" not in html and "href=" not in html and "<strong>not bold" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; [x](javascript:alert(1)) **not bold** a|b" in html


def test_two_intermediates_cannot_be_tested(tmp_path):
    rows = simulate_rows(np.random.default_rng(1), 5.0, 2, 2, ("nli",), ("en", "ov50"))
    write_run(str(tmp_path), rows)
    write_report(str(tmp_path))
    md = (tmp_path / "report.md").read_text()
    assert "cannot be tested" in md.split("## Design")[0]
    assert NEEDS_THREE in md
    assert f"Rank correlations between the measures: not computed, {NEEDS_THREE}" in md
    assert "No task embeddings in this store" in md  # no task_embeddings/ folder


def test_damaged_partial_store_is_reported(tmp_path):
    rows = simulate_rows(np.random.default_rng(2), 5.0, 3, 2, ("nli",), ("en", "ov50"))
    planned_only = {"key": "never-ran", "kind": "target", "intermediate": "task00"}
    write_run(
        str(tmp_path),
        rows,
        status={"errored": {"oops": "RuntimeError: CUDA out of memory"}, "skipped": {}},
        extra_trials=[planned_only, {"key": "oops", "kind": "target"}],
    )
    victim = sorted((tmp_path / "results").glob("target-task01-*.parquet"))[0]
    victim.write_bytes(victim.read_bytes()[:100])
    write_report(str(tmp_path))
    md = (tmp_path / "report.md").read_text()
    assert victim.name in md
    assert "CUDA out of memory" in md
    assert "| trials missing (no result, no status) | 2 |" in md  # never-ran + the damaged one
    assert "| trials errored | 1 |" in md


def test_store_without_results_still_reports(tmp_path):
    write_run(str(tmp_path), simulate_rows(np.random.default_rng(0), 0.0, 2, 1).iloc[0:0])
    written = write_report(str(tmp_path))
    assert set(written) >= EXPECTED
    html = (tmp_path / "report.html").read_text()
    # placeholders of the two heatmaps and the scatter; no model, no overlap
    assert html.count("data:image/png;base64,") == 3
    assert "nothing to test" in (tmp_path / "report.md").read_text()


def test_report_through_a_uri(tmp_path):
    rows = simulate_rows(np.random.default_rng(4), 5.0, 3, 1, ("nli",), ("en", "ov50"))
    write_run(str(tmp_path), rows)
    uri = tmp_path.as_uri()
    written = write_report(uri)
    assert written["report.html"] == f"{uri}/report.html"
    assert (tmp_path / "report.html").is_file()
    assert (tmp_path / "tables" / "gains.csv").is_file()


CHROMIUM = "/usr/bin/chromium"


def test_report_opens_in_headless_chromium(simulated_run, reported, tmp_path):
    import shutil
    import subprocess

    chromium = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)
    if chromium is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    page = (simulated_run / "report.html").as_uri()
    flags = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
    ]
    shot = tmp_path / "report.png"
    run = subprocess.run(
        [*flags, "--window-size=1200,2400", f"--screenshot={shot}", page],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one
    console = [line for line in run.stderr.splitlines() if "CONSOLE" in line]
    assert console == []
    dom = subprocess.run(
        [*flags, "--dump-dom", page], capture_output=True, text=True, timeout=120, check=False
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert [line for line in dom.stderr.splitlines() if "CONSOLE" in line] == []
    for alt in (
        "Gain by target",
        "Gain by target and language",
        "Difficulty vs gain",
        "Gain vs overlap",
        "Random effects",
    ):
        assert f'alt="{alt}"' in dom.stdout
    assert dom.stdout.count("<table>") >= 8
    for heading in (
        "Scores by target (XTREME-R layout)",
        "Mixed model",
        "Two-stage test",
        "Design",
    ):
        assert f"<h2>{heading}</h2>" in dom.stdout


def test_report_has_difficulty_measures_and_task_similarity(simulated_run, reported):
    md = (simulated_run / "report.md").read_text()
    measures = md.split("## Difficulty measures")[1].split("## Task similarity")[0]
    assert "| intermediate | score | difficulty | V-information (bits) |" in measures
    # simulated V-information falls with the planted difficulty: the ranks agree exactly
    assert "| difficulty | V-information (bits) | 6 | -1.00 |" in measures
    similarity = md.split("## Task similarity")[1].split("## Mixed model")[0]
    assert "| intermediate | nli | pos |" in similarity
    assert "slope (points per unit cosine)" in similarity
    run = load_run(str(simulated_run))
    a, x = np.array(run.embeddings["task00"]), np.array(run.embeddings["nli"])
    cosine = a @ x / np.linalg.norm(a) / np.linalg.norm(x)
    assert f"| task00 | {cosine:.3f} |" in similarity
    names = [f"task{i:02d}" for i in range(6)] + ["nli", "pos"]
    centre = np.mean([run.embeddings[n] for n in names], axis=0)
    a, x = a - centre, x - centre
    centred = a @ x / np.linalg.norm(a) / np.linalg.norm(x)
    assert f"| task00 | {centred:.3f} |" in similarity.split("mean task embedding")[1]
    table = pd.read_csv(simulated_run / "tables" / "similarity.csv")
    assert len(table) == 12  # 6 intermediates x 2 targets
    gains = pd.read_csv(simulated_run / "tables" / "gains.csv")
    assert {"similarity", "shared_training_data"} <= set(gains.columns)
    assert not gains["shared_training_data"].any()
    assert "excluded from every test" not in md
    assert "| (intermediate, target) pairs sharing English training data" in md
    html = (simulated_run / "report.html").read_text()
    assert "<h2>Difficulty measures</h2>" in html and "<h2>Task similarity</h2>" in html
    assert (simulated_run / "tables" / "difficulty_measures.csv").is_file()


SHARED = ("task00", "nli")  # the easiest intermediate trains the nli target's own data
PLANT = 0.20  # +20 points: what training on the target's own English data might add


def _confounded_rows(plant: float) -> pd.DataFrame:
    rows = simulate_rows(np.random.default_rng(7), 8.0, 4, 2, ("nli", "pos"), ("en", "ov50"))
    pair = (
        (rows["kind"] == "target")
        & (rows["intermediate"] == SHARED[0])
        & (rows["target_task"] == SHARED[1])
    )
    rows.loc[pair, "shared_training_data"] = True
    rows.loc[pair, "value"] += plant
    return rows


@pytest.fixture(scope="module")
def confounded(tmp_path_factory):
    """Analyses of a run with a huge gain planted on the shared pair: (excluded, kept)."""
    run = tmp_path_factory.mktemp("confounded") / "run"
    write_run(str(run), _confounded_rows(PLANT))
    loaded = load_run(str(run))
    rows = _confounded_rows(PLANT)
    absent = tmp_path_factory.mktemp("confounded") / "without-the-pair"
    write_run(str(absent), rows[~rows["shared_training_data"]])
    return analyse(loaded), analyse(loaded, confounded="keep"), analyse(load_run(str(absent)))


def test_confounded_pairs_are_excluded_from_the_headline(confounded):
    excluded, kept, absent = confounded
    # 4 intermediates x 2 seeds x 2 targets x 1 zero-shot language, minus the pair's 2 seeds
    assert len(excluded.tested) == len(absent.tested) == 14
    # excluded: the tests see exactly the study whose pair never ran, planted gain and all
    assert excluded.two_stage.estimate == pytest.approx(absent.two_stage.estimate, abs=1e-9)
    assert excluded.two_stage.se == pytest.approx(absent.two_stage.se, abs=1e-9)
    assert excluded.by_target["slope"].tolist() == pytest.approx(absent.by_target["slope"].tolist())
    assert excluded.correlations.spearman == pytest.approx(absent.correlations.spearman)
    assert excluded.mixed.n_obs == 14 and kept.mixed.n_obs == 16  # the mixed fits too
    assert excluded.mixed.term("difficulty", "estimate") == pytest.approx(
        absent.mixed.term("difficulty", "estimate"), abs=1e-4
    )
    # kept: +20 points on half of the easiest intermediate's rows, about +10 on its mean gain,
    # pulls the slope down by about 10 * 0.35 / 0.27 = 13 points per unit of difficulty
    assert kept.two_stage.estimate < excluded.two_stage.estimate - 6
    assert excluded.shared.values.tolist() == [list(SHARED)]
    # the gains table keeps the pair, flagged
    flagged = excluded.gains[excluded.gains["shared_training_data"]]
    assert set(zip(flagged["intermediate"], flagged["target_task"], strict=True)) == {SHARED}
    assert len(flagged) == 4  # 2 seeds x 2 languages
    with pytest.raises(ValueError, match="confounded"):
        analyse(excluded.run, confounded="drop")


def test_report_says_how_many_pairs_were_excluded_and_why(confounded):
    excluded, kept, _ = confounded
    md = render_markdown(build_blocks(excluded))
    assert (
        "1 (intermediate, target) pair (task00 with nli) was excluded from every test because "
        "the target's English training data is also the intermediate's"
    ) in md.split("## Design")[0]
    row = "| (intermediate, target) pairs sharing English training data (excluded from the tests) |"
    assert f"{row} 1 |" in md
    assert "is kept in the tests (confounded='keep')" in render_markdown(build_blocks(kept))


def test_report_wording_holds_only_when_its_premise_does(simulated_run, reported):
    md = (simulated_run / "report.md").read_text()
    answer = md.split("## Design")[0]
    # two targets: not called XTREME-R averages
    assert "not XTREME-R averages, which need all ten of its targets" in md
    # the simulated run has no intermediate variance: the random-slope model is kept out
    assert "not quoted: the fit puts the intermediate variance at ~0 (singular)" in answer
    assert "each target weighted equally (languages averaged within target" in answer
    # one default path: the exact engine, named; statsmodels neither runs nor is mentioned
    mixed = md.split("## Mixed model")[1].split("## Provenance")[0]
    assert mixed.startswith("\n\n**Fitted with the exact-likelihood engine** (analysis/mixed.py")
    assert "Optimizer kept: exact " in mixed
    assert "statsmodels" not in mixed
    fit_warnings = mixed.split("Fit warnings")[1]
    log = pd.read_csv(simulated_run / "tables" / "fit_log.csv")
    assert not log["message"].str.contains("statsmodels").any()
    assert set(log.columns) == {"model", "message", "shown"}
    shown = log[log["shown"]]["message"].tolist()
    pairs = log[log["shown"]][["model", "message"]].itertuples(index=False)
    assert all(f"- {model}: {message}" in fit_warnings for model, message in pairs)
    assert len(shown) < len(log)


def test_the_mixed_model_section_names_the_backend_that_fitted_it(simulated_run):
    cross_check = analyse(load_run(str(simulated_run)), backend="statsmodels")
    assert cross_check.mixed.backend == "statsmodels"
    mixed = render_markdown(build_blocks(cross_check)).split("## Mixed model")[1]
    assert mixed.startswith("\n\n**Fitted with statsmodels MixedLM** (its optimizers, judged")
    assert "Optimizer kept: statsmodels " in mixed
