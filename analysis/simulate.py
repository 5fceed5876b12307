"""Simulated sweeps with a known effect of difficulty: rows in the store schema, and run folders.

Used by the tests (a planted slope must be recovered, a zero slope must not be found) and to
look at a report without running a sweep.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from analysis.results import BASELINE, CONTROL, OPTIONAL_COLUMNS, ROW_DTYPES
from sweep import schema

INTERMEDIATE_LABELS = 4  # intermediate tasks are 4-way classification: chance 0.25
V_INFO_MAX = 2.0  # bits of V-information of a solved 4-way task (log2 4)
V_INFO_NOISE = 0.05  # seed-to-seed noise of the V-information estimate, in bits
TARGET_LABELS = 3  # classification targets are 3-way (NLI-like)
TAGS = 17  # tagging targets: UD-like tag set
# The demo world's languages (configs/demo.yaml), written into simulated manifests.
WORLD_LANGUAGES = {
    "en": {"overlap": 1.0, "script": "latin"},
    "ov80": {"overlap": 0.8, "script": "latin"},
    "ov50": {"overlap": 0.5, "script": "latin"},
    "sov50": {"overlap": 0.5, "script": "latin"},
    "fake": {"overlap": 1.0, "script": "cyrillic"},
}


def simulate_rows(
    rng: np.random.Generator,
    slope: float,
    n_intermediate: int,
    n_seed: int,
    targets: Sequence[str] = ("nli", "pos"),
    languages: Sequence[str] | Mapping[str, Sequence[str]] = (
        "en",
        "ov80",
        "ov50",
        "sov50",
        "fake",
    ),
    *,
    intercept: float = 2.0,
    difficulties: Sequence[float] | None = None,
    difficulty_noise: float = 0.02,
    sd_target: float = 1.0,
    sd_language: float = 1.0,
    sd_seed: float = 1.0,
    sd_intermediate: float = 0.0,
    sd_residual: float = 1.0,
    tagging: Collection[str] = ("pos",),
    scratch: bool = True,
    v_information: bool = True,
) -> pd.DataFrame:
    """Intermediate, baseline, control and target rows in the store schema.

    Gain in points = intercept + slope * difficulty + target + language-within-target + seed
    (+ intermediate) + residual, all random effects normal with the given sds. The true
    difficulty of intermediate i is `difficulties[i]` (default evenly spread over 0.1..0.8);
    each seed measures it with `difficulty_noise`. Targets in `tagging` report f1 (primary,
    chance NaN) and token_accuracy; others report accuracy. Baselines differ by seed, so
    pairing with the wrong seed's baseline adds visible noise. With `v_information`, each
    intermediate trial also reports its dev set's V-information in bits, decreasing in the true
    difficulty (V_INFO_MAX * (1 - difficulty) + noise), drawn last so the other rows are the
    same with or without it. No pair shares training data. `languages` is one list for every
    target, or a list per target (e.g. `xtreme_r_language_lists()`).
    """
    by_target = (
        {t: tuple(languages[t]) for t in targets}
        if isinstance(languages, Mapping)
        else dict.fromkeys(targets, tuple(languages))
    )
    names = [f"task{i:02d}" for i in range(n_intermediate)]
    true_difficulty = np.asarray(
        difficulties if difficulties is not None else np.linspace(0.1, 0.8, n_intermediate),
        dtype=float,
    )
    if len(true_difficulty) != n_intermediate:
        raise ValueError(f"difficulties has {len(true_difficulty)} values, not {n_intermediate}")
    seeds = list(range(n_seed))
    target_effect = {t: rng.normal(0, sd_target) for t in targets}
    language_effect = {
        (t, lang): rng.normal(0, sd_language) for t in targets for lang in by_target[t]
    }
    seed_effect = {s: rng.normal(0, sd_seed) for s in seeds}
    intermediate_effect = {name: rng.normal(0, sd_intermediate) for name in names}
    # Baseline scores: English highest, other languages lower; every seed has its own luck.
    base_language = {
        (t, lang): (0.75 if lang == "en" else rng.uniform(0.45, 0.65))
        for t in targets
        for lang in by_target[t]
    }
    base_seed = {(t, s): rng.normal(0, 0.02) for t in targets for s in seeds}
    baseline = {
        (t, lang, s): base_language[t, lang] + base_seed[t, s] + rng.normal(0, 0.005)
        for t in targets
        for lang in by_target[t]
        for s in seeds
    }

    records: list[dict[str, Any]] = []

    def add(**row: Any) -> None:
        records.append(
            {
                "n_examples": 500,
                "train_size": 2000,
                "encoder_sha": f"sha-{row['trial_key']}",
                "seconds": 60.0,
                **OPTIONAL_COLUMNS,  # what a healthy fine-tune without a recorded curve writes
                **row,
            }
        )

    measured: dict[tuple[str, int], float] = {}
    for name, difficulty in zip(names, true_difficulty, strict=True):
        for seed in seeds:
            d = float(np.clip(difficulty + rng.normal(0, difficulty_noise), 0, 1))
            chance = 1 / INTERMEDIATE_LABELS
            score = chance + (1 - chance) * (1 - d)
            measured[name, seed] = 1 - (score - chance) / (1 - chance)
            add(
                kind="intermediate",
                intermediate=name,
                seed=seed,
                target_task=None,
                language="en",
                split="dev",
                metric="accuracy",
                value=score,
                primary=True,
                chance=chance,
                majority=np.nan,
                trial_key=f"intermediate-{name}-s{seed}",
            )

    parents = [BASELINE, *([CONTROL] if scratch else []), *names]
    for seed in seeds:
        for parent in parents:
            for target in targets:
                key = f"target-{parent}-{target}-s{seed}"
                for lang in by_target[target]:
                    if parent == BASELINE:
                        value = baseline[target, lang, seed]
                    elif parent == CONTROL:
                        # a random encoder: near majority, a little above from shared words
                        value = 0.36 + rng.normal(0, 0.01)
                    else:
                        gain = (
                            intercept
                            + slope * measured[parent, seed]
                            + target_effect[target]
                            + language_effect[target, lang]
                            + seed_effect[seed]
                            + intermediate_effect[parent]
                            + rng.normal(0, sd_residual)
                        )
                        value = baseline[target, lang, seed] + gain / 100
                    value = float(np.clip(value, 0, 1))
                    common = {
                        "kind": "target",
                        "intermediate": parent,
                        "seed": seed,
                        "target_task": target,
                        "language": lang,
                        "split": "test",
                        "trial_key": key,
                    }
                    if target in tagging:
                        add(
                            **common,
                            metric="f1",
                            value=value,
                            primary=True,
                            chance=np.nan,
                            majority=0.12,
                        )
                        add(
                            **common,
                            metric="token_accuracy",
                            value=min(1.0, value + 0.05),
                            primary=False,
                            chance=1 / TAGS,
                            majority=0.18,
                        )
                    else:
                        add(
                            **common,
                            metric="accuracy",
                            value=value,
                            primary=True,
                            chance=1 / TARGET_LABELS,
                            majority=0.34,
                        )
    if v_information:
        for name, difficulty in zip(names, true_difficulty, strict=True):
            for seed in seeds:
                bits = V_INFO_MAX * (1 - difficulty) + rng.normal(0, V_INFO_NOISE)
                add(
                    kind="intermediate",
                    intermediate=name,
                    seed=seed,
                    target_task=None,
                    language="en",
                    split="dev",
                    metric="v_information",
                    value=float(bits),
                    primary=False,
                    chance=np.nan,
                    majority=np.nan,
                    trial_key=f"intermediate-{name}-s{seed}",
                )
    frame = pd.DataFrame.from_records(records)
    return frame[list(ROW_DTYPES)].astype(ROW_DTYPES)


def simulate_embeddings(
    rng: np.random.Generator, tasks: Sequence[str], dim: int = 16
) -> dict[str, list[float]]:
    """A TextEmb-like vector per task: a shared component plus a task's own, so cosines are
    mostly positive and differ between pairs, as mean-pooled embeddings of one encoder do."""
    common = rng.normal(0, 1, dim)
    return {t: (common + rng.normal(0, 1, dim)).tolist() for t in tasks}


def write_run(
    run: str,
    rows: pd.DataFrame,
    *,
    name: str = "simulated",
    status: dict[str, dict[str, str]] | None = None,
    extra_trials: Sequence[dict[str, Any]] = (),
    embeddings: dict[str, list[float]] | None = None,
    config: dict[str, Any] | None = None,
) -> list[str]:
    """Write `rows` as a run folder (manifest.json, status.json, results/<trial>.parquet, and
    task_embeddings/<task>.json for each of `embeddings`).

    The manifest plans a pretrain trial, every trial in `rows` and `extra_trials` (planned but
    without results); `config` is merged into its config (e.g. a difficulty.external map).
    Returns the result file paths.
    """
    fs, base = schema.open_store(run)
    fs.create_dir(f"{base}/{schema.RESULTS_DIR}", recursive=True)
    trials: list[dict[str, Any]] = [
        {
            "key": "pretrain",
            "kind": "pretrain",
            "intermediate": None,
            "seed": None,
            "target_task": None,
            "parent": None,
        }
    ]
    written = []
    for key, part in rows.groupby("trial_key", sort=True):
        first = part.iloc[0]
        trials.append(
            {
                "key": key,
                "kind": first["kind"],
                "intermediate": first["intermediate"],
                "seed": int(first["seed"]),
                "target_task": first["target_task"],
                "parent": "pretrain",
            }
        )
        path = f"{base}/{schema.result_path(key)}"
        with fs.open_output_stream(path) as out:
            pq.write_table(schema.table(part, schema.ROWS), out)
        written.append(path)
    trials.extend(extra_trials)
    codes = sorted(set(rows["language"].dropna()))
    world = [{"code": c, **WORLD_LANGUAGES[c]} for c in codes if c in WORLD_LANGUAGES]
    manifest = {
        "name": name,
        "config": {"simulated": True, "world": {"languages": world}, **(config or {})},
        "versions": {},
        "git_commit": None,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "trials": trials,
    }
    _write_json(fs, f"{base}/manifest.json", manifest)
    if status is not None:
        _write_json(fs, f"{base}/status.json", status)
    if embeddings:
        fs.create_dir(f"{base}/task_embeddings", recursive=True)
        for task, vector in embeddings.items():
            payload = {"task": task, "n_texts": 256, "vector": list(vector)}
            _write_json(fs, f"{base}/task_embeddings/{task}.json", payload)
    return written


def _write_json(fs: Any, path: str, payload: Any) -> None:
    with fs.open_output_stream(path) as out:
        out.write(json.dumps(payload, indent=2).encode())


def xtreme_r_language_lists() -> dict[str, tuple[str, ...]]:
    """Every evaluation language (English included where the target has it) per XTREME-R
    target, from the task registry (trainers.tasks, torch-free), never a hand copy."""
    from trainers.tasks import TARGETS

    return {t.name: tuple(t.languages) for t in TARGETS if t.source}


# How many zero-shot languages (English excluded) each target has: the XTREME-R study's,
# counted from the registry (its language codes are trainers.tasks.XTREME_R_LANGUAGES) ...
XTREME_R_ZERO_SHOT = {
    name: sum(lang != "en" for lang in langs) for name, langs in xtreme_r_language_lists().items()
}
# ... and the demo sweep's (configs/demo.yaml).
DEMO_ZERO_SHOT = {"nli": 4, "pos": 4}


def simulate_gains(
    rng: np.random.Generator,
    slope: float,
    n_intermediate: int,
    n_seed: int,
    languages: dict[str, int],
    *,
    intercept: float = 2.0,
    sd_target: float = 1.0,
    sd_language: float = 1.0,
    sd_intermediate: float = 1.0,
    sd_intermediate_seed: float = 0.5,
    sd_seed: float = 0.5,
    sd_slope_target: float = 0.0,
    sd_residual: float = 1.0,
    difficulty_noise: float = 0.02,
    missing: float = 0.0,
    seed_quality: float = 0.0,
    informative_missing: float = 0.0,
    n_informative: int = 2,
    informative_boost: float = 3.0,
) -> pd.DataFrame:
    """A gains table (the models' input) drawn directly, vectorized: fast enough for
    calibration loops at the real design's size (about 25k rows per draw).

    `languages` maps each target to its number of zero-shot languages. Gain = intercept +
    (slope + target slope) * measured difficulty + target + language-in-target + intermediate +
    intermediate:seed + seed + residual. Each language has an `overlap` in [0, 1] (a third of
    them 0, like another script). `missing` is the share of (intermediate, seed, target)
    trials dropped at random, as in a partial or failed sweep.

    `seed_quality` in [-1, 1] correlates each (intermediate, seed)'s difficulty noise with its
    intermediate:seed effect, negatively: a lucky seed measures its task easier and gains more
    (a confound within intermediates, none between them). `informative_missing` drops the
    (intermediate, seed, target) trials of the `n_informative` first targets, whose gains are
    raised by `informative_boost` points, with probability `informative_missing` times the
    intermediate's true difficulty rank share (0 for the easiest, the full value for the
    hardest): missing cells tied to difficulty on higher-gain targets. `attrs["target_slopes"]`
    holds each target's realized slope.
    """
    targets = list(languages)
    cells = [(t, j) for t in targets for j in range(languages[t])]
    n_cells = len(cells)
    true_d = np.linspace(0.1, 0.8, n_intermediate)
    noise = rng.normal(0, 1, (n_intermediate, n_seed))
    measured = np.clip(true_d[:, None] + difficulty_noise * noise, 0, 1)
    t_index = np.array([targets.index(t) for t, _ in cells])
    overlap = np.where(rng.uniform(size=n_cells) < 1 / 3, 0.0, rng.uniform(0.2, 1.0, n_cells))
    target_effect = rng.normal(0, sd_target, len(targets))
    target_effect[:n_informative] += informative_boost if informative_missing > 0 else 0.0
    cell_effect = target_effect[t_index] + rng.normal(0, sd_language, n_cells)
    target_slope = slope + rng.normal(0, sd_slope_target, len(targets))
    cell_slope = target_slope[t_index]
    i_eff = rng.normal(0, sd_intermediate, n_intermediate)
    own = rng.normal(0, 1, (n_intermediate, n_seed))
    rho = float(np.clip(seed_quality, -1, 1))
    is_eff = sd_intermediate_seed * (-rho * noise + math.sqrt(1 - rho**2) * own)
    s_eff = rng.normal(0, sd_seed, n_seed)
    i, s, c = np.meshgrid(
        np.arange(n_intermediate), np.arange(n_seed), np.arange(n_cells), indexing="ij"
    )
    i, s, c = i.ravel(), s.ravel(), c.ravel()
    gain = (
        intercept
        + cell_slope[c] * measured[i, s]
        + cell_effect[c]
        + i_eff[i]
        + is_eff[i, s]
        + s_eff[s]
        + rng.normal(0, sd_residual, len(i))
    )
    keep = np.ones(len(i), dtype=bool)
    if missing > 0:
        dropped = rng.uniform(size=(n_intermediate, n_seed, len(targets))) < missing
        keep = ~dropped[i, s, t_index[c]]
    if informative_missing > 0:
        rank = np.arange(n_intermediate) / max(n_intermediate - 1, 1)  # true_d is increasing
        chance = np.zeros((n_intermediate, n_seed, len(targets)))
        chance[:, :, :n_informative] = informative_missing * rank[:, None, None]
        dropped = rng.uniform(size=chance.shape) < chance
        keep &= ~dropped[i, s, t_index[c]]
    names = np.array([f"task{k:02d}" for k in range(n_intermediate)], dtype=object)
    target_names = np.array(targets, dtype=object)[t_index]
    language_names = np.array([f"l{j:02d}" for _, j in cells], dtype=object)
    frame = pd.DataFrame(
        {
            "intermediate": names[i],
            "seed": s.astype(np.int64),
            "target_task": target_names[c],
            "language": language_names[c],
            "gain": gain,
            "difficulty": measured[i, s],
            "overlap": overlap[c],
        }
    )
    out = frame.loc[keep].reset_index(drop=True)
    # the realized slope of each target: their plain mean is what the headline estimates
    out.attrs["target_slopes"] = dict(zip(targets, target_slope.tolist(), strict=True))
    return out
