"""From result rows to the tables the models use: difficulty, paired gains and baselines.

Metrics in the rows are fractions in [0, 1]; gains and baseline tables are in points (x100).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from analysis.results import BASELINE, CONTROL

log = logging.getLogger(__name__)

PAIR_KEYS = ["seed", "target_task", "language"]


DIFFICULTY_COLUMNS = [
    "intermediate",
    "seed",
    "metric",
    "score",
    "chance",
    "floor",
    "floor_kind",
    "difficulty",
    "train_size",
    "v_information",
    "log_train_size",
    "external",
]
V_INFORMATION = "v_information"  # the metric name of the V-usable information rows

# The floor of each primary metric family, the score of a predictor that ignores its input; one
# place for every family (trainers.metrics.METRICS names the metrics). Accuracy (classification,
# multiple choice, token accuracy, Tatoeba top-1): the better of a uniform guess (`chance`) and
# always predicting the majority English training label (`majority`), where the row records them,
# because a task whose majority class scores 0.6 is not "60% solved". Span/chunk F1, exact match,
# and ranking metrics (MAP@20, MRR@20) have no chance level a label-blind guess reaches, and a
# predictor that ignores the input scores about 0 on them (no span, chunk or rank agrees by
# luck over a large candidate pool): their floor is 0, by this definition.
DIFFICULTY_SCALE = (
    "Difficulty is on one 0-1 scale for every metric family: 1 - (English dev score - floor) "
    "/ (1 - floor), clipped to [0, 1], 0 for a solved task and 1 at the floor; the floor is "
    "the better of a uniform guess and the majority label for accuracy metrics, and 0 for F1, "
    "EM/F1 and ranking metrics (no label-blind guess scores above about 0 on them)."
)
ACCURACY_METRICS = frozenset({"accuracy", "token_accuracy"})
ZERO_FLOOR_METRICS = frozenset({"f1", "f1_em", "exact_match", "map@20", "mrr@20"})


def metric_floor(metric: str, chance: float, majority: float) -> tuple[float, str]:
    """(floor, which) of one primary score: `which` is "majority", "chance" or "zero"."""
    if metric in ACCURACY_METRICS:
        known = {k: v for k, v in (("chance", chance), ("majority", majority)) if np.isfinite(v)}
        if known:
            kind = max(known, key=lambda k: known[k])
            return float(known[kind]), kind
        return 0.0, "zero"  # an accuracy without a recorded guess (Tatoeba): no label prior
    return 0.0, "zero"  # ZERO_FLOOR_METRICS, and any metric this table does not know yet


def difficulty_table(rows: pd.DataFrame, manifest: dict | None = None) -> pd.DataFrame:
    """Per (intermediate, seed): English dev score, its floor, difficulty, train size and the
    other difficulty measures.

    `difficulty = 1 - (score - floor) / (1 - floor)`, clipped to [0, 1]: 0 when the task is
    solved, 1 at (or below) the floor of its metric family (`metric_floor`: majority or chance
    for accuracy, 0 for F1, EM/F1 and ranking metrics; `floor_kind` says which). The baseline
    and the control have no intermediate task and are left out.
    `v_information` is the dev set's V-usable information in bits (higher = easier; NaN where the
    trial recorded none), `log_train_size` the natural log of the examples trained on, and
    `external` the a-priori value of `manifest` config difficulty.external (NaN when absent).
    """
    columns = DIFFICULTY_COLUMNS
    intermediate_dev = rows[
        (rows["kind"] == "intermediate")
        & (rows["split"] == "dev")
        & ~rows["intermediate"].isin([BASELINE, CONTROL])
    ]
    picked = intermediate_dev[intermediate_dev["primary"].astype(bool)]
    if picked.empty:
        return pd.DataFrame({c: pd.Series(dtype=_dtype(c)) for c in columns})
    table = (
        picked.groupby(["intermediate", "seed"], as_index=False)
        .agg(
            metric=("metric", "first"),
            score=("value", "mean"),
            chance=("chance", "mean"),
            majority=("majority", "mean"),
            train_size=("train_size", "first"),
        )
        .sort_values(["intermediate", "seed"], ignore_index=True)
    )
    floors = [
        metric_floor(str(m), float(c), float(j))
        for m, c, j in zip(table["metric"], table["chance"], table["majority"], strict=True)
    ]
    table["floor"] = [f for f, _ in floors]
    table["floor_kind"] = [k for _, k in floors]
    with np.errstate(divide="ignore", invalid="ignore"):
        raw = 1 - (table["score"] - table["floor"]) / (1 - table["floor"])
    table["difficulty"] = raw.clip(0.0, 1.0)
    v_info = (
        intermediate_dev[intermediate_dev["metric"] == V_INFORMATION]
        .groupby(["intermediate", "seed"], as_index=False)["value"]
        .mean()
        .rename(columns={"value": V_INFORMATION})
    )
    if v_info.empty:  # null models as trials of their own: the difference of two means
        v_info = _v_information_from_parts(rows[rows["split"] == "dev"])
    table = table.merge(v_info, on=["intermediate", "seed"], how="left", validate="one_to_one")
    sizes = table["train_size"].astype(float)
    table["log_train_size"] = np.log(sizes.where(sizes > 0))  # no log of 0 examples: NaN
    external = external_difficulty(manifest or {})
    table["external"] = table["intermediate"].map(external).astype(float)
    return table[columns]


def _v_information_from_parts(dev: pd.DataFrame) -> pd.DataFrame:
    """V-information per (intermediate, seed) as mean log2 p(gold) under the intermediate's
    model (`log2_prob`, kind intermediate) minus the same under its null model
    (`null_log2_prob`, kind null): sweep.plan trains the null model as a trial beside the
    intermediate."""
    keys = ["intermediate", "seed"]
    parts = [
        dev[(dev["metric"] == metric) & (dev["kind"] == kind)]
        .groupby(keys, as_index=False)["value"]
        .mean()
        .rename(columns={"value": metric})
        for kind, metric in (("intermediate", "log2_prob"), ("null", "null_log2_prob"))
    ]
    both = parts[0].merge(parts[1], on=keys, how="inner")
    both[V_INFORMATION] = both["log2_prob"] - both["null_log2_prob"]
    return both[[*keys, V_INFORMATION]]


def external_difficulty(manifest: dict) -> dict[str, float]:
    """The a-priori difficulty of each intermediate given in the config (difficulty.external)."""
    config = manifest.get("config") or {}
    values = (config.get("difficulty") or {}).get("external") or {}
    out = {}
    for name, value in values.items():
        try:
            out[str(name)] = float(value)
        except (TypeError, ValueError):  # a null or a string in a hand-edited manifest
            out[str(name)] = math.nan
    return out


def similarity_table(
    embeddings: dict[str, Sequence[float]],
    intermediates: Iterable[str],
    targets: Iterable[str],
) -> pd.DataFrame:
    """Cosine of each intermediate's and each target's task embedding (TextEmb), long format.

    One row per (intermediate, target_task) whose two vectors exist, have the same length and
    are non-zero; empty (with the columns) when the store has no embeddings. `similarity` is the
    published TextEmb cosine; `similarity_centred` the cosine after subtracting the mean embedding
    of the study's tasks (those listed here), which removes the direction every mean-pooled state
    shares (anisotropy) and leaves raw cosines of 0.9-1.0 comparable. NaN with fewer than two.
    """
    columns = ["intermediate", "target_task", "similarity", "similarity_centred"]
    names = [*dict.fromkeys(intermediates), *dict.fromkeys(targets)]
    vectors = {
        name: np.asarray(embeddings[name], dtype=float)
        for name in dict.fromkeys(names)
        if name in (embeddings or {})
    }
    sizes = Counter(v.shape for v in vectors.values())
    shape = sizes.most_common(1)[0][0] if sizes else None
    for name in [n for n, v in vectors.items() if v.shape != shape]:
        log.warning("task embedding of %s differs in length from the others; skipped", name)
        del vectors[name]
    centre = np.mean(list(vectors.values()), axis=0) if len(vectors) > 1 else None
    out = []
    for name in dict.fromkeys(intermediates):
        for target in dict.fromkeys(targets):
            a, b = vectors.get(name), vectors.get(target)
            if a is None or b is None:
                continue
            cosine = _cosine(a, b)
            if np.isnan(cosine):
                continue
            centred = np.nan if centre is None else _cosine(a - centre, b - centre)
            out.append((name, target, cosine, centred))
    if not out:
        return pd.DataFrame({c: pd.Series(dtype=_dtype(c)) for c in columns})
    return pd.DataFrame(out, columns=columns)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / norm if norm > 0 else np.nan


def _select_metric(rows: pd.DataFrame, metric: str) -> pd.Series:
    if metric == "primary":
        return rows["primary"].astype(bool)
    return rows["metric"] == metric


def gain_table(rows: pd.DataFrame, metric: str = "primary") -> pd.DataFrame:
    """Target test rows (not the control) paired with the same seed's baseline, gain in points.

    `metric` is "primary" (each task's official metric) or a metric name such as
    "token_accuracy". A row whose seed has no baseline result keeps NaN baseline and gain; a row
    whose (intermediate, seed) has no intermediate result keeps NaN difficulty. Models drop both.
    `shared_training_data` is True where the target's English training data is also the
    intermediate's (a confound: such a gain is more training on the target's own data).
    """
    columns = [
        "intermediate",
        "seed",
        "target_task",
        "language",
        "metric",
        "value",
        "baseline",
        "gain",
        "difficulty",
        "shared_training_data",
    ]
    target = rows[
        (rows["kind"] == "target") & (rows["split"] == "test") & _select_metric(rows, metric)
    ]
    treated = target[~target["intermediate"].isin([BASELINE, CONTROL])]
    if treated.empty:
        return pd.DataFrame({c: pd.Series(dtype=_dtype(c)) for c in columns})
    base = (
        target[target["intermediate"] == BASELINE]
        .groupby([*PAIR_KEYS, "metric"], as_index=False)["value"]
        .mean()
        .rename(columns={"value": "baseline"})
    )
    # The pairing is within seed: seed-level luck in fine-tuning the target cancels in the gain.
    # absent in rows built without the column (it came later): older stores mean False
    shared = treated.get("shared_training_data", pd.Series(False, index=treated.index))
    treated = treated.assign(shared_training_data=shared.fillna(False).astype(bool))
    table = treated[["intermediate", *PAIR_KEYS, "metric", "value", "shared_training_data"]].merge(
        base, on=[*PAIR_KEYS, "metric"], how="left", validate="many_to_one"
    )
    unpaired = int(table["baseline"].isna().sum())
    if unpaired:
        log.warning("%d target results have no same-seed baseline; their gain is NaN", unpaired)
    table["gain"] = 100 * (table["value"] - table["baseline"])
    difficulty = difficulty_table(rows)[["intermediate", "seed", "difficulty"]]
    table = table.merge(difficulty, on=["intermediate", "seed"], how="left", validate="many_to_one")
    return table.sort_values(
        ["intermediate", "seed", "target_task", "language"], ignore_index=True
    )[columns]


def baseline_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per target_task x language on the primary test metric, all x100: chance, majority, the
    scratch control, `none`, then each intermediate (means over seeds).

    Shown next to each other so that transfer a random encoder also gets (shared words) is not
    read as learned transfer.
    """
    target = rows[(rows["kind"] == "target") & (rows["split"] == "test") & rows["primary"]]
    keys = ["target_task", "language"]
    if target.empty:
        return pd.DataFrame(
            {
                c: pd.Series(dtype=_dtype(c))
                for c in [*keys, "chance", "majority", CONTROL, BASELINE]
            }
        )
    reference = target.groupby(keys).agg(chance=("chance", "mean"), majority=("majority", "mean"))
    means = target.pivot_table(index=keys, columns="intermediate", values="value", aggfunc="mean")
    intermediates = sorted(c for c in means.columns if c not in (BASELINE, CONTROL))
    means = means.reindex(columns=[CONTROL, BASELINE, *intermediates])
    table = reference.join(means, how="outer") * 100
    table.columns.name = None
    return table.reset_index()


def _dtype(column: str) -> str:
    if column in ("seed", "train_size"):
        return "int64"
    if column == "shared_training_data":
        return "bool"
    if column in ("intermediate", "target_task", "language", "metric", "floor_kind"):
        return "object"
    return "float64"


def registry_confounds(
    manifest: dict, intermediates: Iterable[str], targets: Iterable[str]
) -> set[tuple[str, str]]:
    """(intermediate, target) pairs whose target, or a stage trained before it, uses the
    intermediate's English training data, from the registry (`trainers.tasks`, torch-free) and
    the run's config (tasks.<name>.before, mixtures). Flags what stores written before stages
    were checked missed (Tatoeba trained on XQuAD first shares SQuAD with squad and squad_v2).
    Tasks the registry does not know contribute nothing."""
    import dataclasses

    from trainers.tasks import TASKS, shares_training_data

    config = manifest.get("config") or {}
    options = config.get("tasks") or {}
    mixtures = config.get("mixtures") or {}

    def task(name: str) -> object | None:
        if name in mixtures:
            members = [TASKS[m] for m in (mixtures[name] or {}).get("tasks") or [] if m in TASKS]
            if not members:
                return None
            data = tuple(sorted({d for m in members for d in m.train_data}))
            return dataclasses.replace(members[0], name=name, train_data=data, before=())
        if name not in TASKS:
            return None
        before = (options.get(name) or {}).get("before")
        found = TASKS[name]
        return dataclasses.replace(found, before=tuple(before)) if before else found

    out = set()
    for name in dict.fromkeys(intermediates):
        for target in dict.fromkeys(targets):
            a, b = task(str(name)), task(str(target))
            if a is not None and b is not None and shares_training_data(a, b):
                out.add((str(name), str(target)))
    return out


def shared_pairs(gains: pd.DataFrame) -> pd.DataFrame:
    """(intermediate, target_task) pairs whose target trains on the intermediate's English data."""
    if "shared_training_data" not in gains:
        return pd.DataFrame({"intermediate": [], "target_task": []}, dtype=object)
    flagged = gains[gains["shared_training_data"].astype(bool)]
    return (
        flagged[["intermediate", "target_task"]]
        .drop_duplicates()
        .sort_values(["intermediate", "target_task"], ignore_index=True)
    )


def cell_means(gains: pd.DataFrame) -> pd.DataFrame:
    """Mean gain over seeds per intermediate x (target_task/language): the heatmap grid."""
    if gains.empty:
        return pd.DataFrame()
    frame = gains.assign(cell=gains["target_task"] + "/" + gains["language"])
    grid = frame.pivot_table(index="intermediate", columns="cell", values="gain", aggfunc="mean")
    grid.columns.name = None
    return grid


def seed_means(gains: pd.DataFrame) -> pd.DataFrame:
    """Per (intermediate, seed): difficulty and mean gain over targets and languages."""
    usable = gains.dropna(subset=["gain", "difficulty"])
    if usable.empty:
        return pd.DataFrame(
            {"intermediate": [], "seed": [], "difficulty": [], "gain": [], "n": []}
        ).astype({"seed": np.int64, "n": np.int64})
    return usable.groupby(["intermediate", "seed"], as_index=False).agg(
        difficulty=("difficulty", "first"), gain=("gain", "mean"), n=("gain", "size")
    )


def task_categories(manifest: dict, tasks: Iterable[str]) -> dict[str, str]:
    """Each target's XTREME-R category (its two averages group by it): from the manifest, which
    records the registry's entry of every task of the run, else from the registry itself (stores
    written before the manifest had tasks), else "other"."""
    from trainers.tasks import TASKS

    recorded = manifest.get("tasks") or {}
    out = {}
    for name in tasks:
        category = (recorded.get(name) or {}).get("category")
        if not category and name in TASKS:
            category = TASKS[name].category
        out[name] = category or "other"
    return out


def language_overlap(manifest: dict) -> dict[str, float]:
    """Lexical overlap of each language with English, from the synthetic world's settings.

    A language in another script than English shares no subword with it (overlap 0), whatever
    its word overlap; English is 1. Empty when the manifest does not describe the languages.
    """
    world = (manifest.get("config") or {}).get("world") or {}
    languages = [x for x in world.get("languages") or [] if isinstance(x, dict) and "code" in x]
    scripts = {x["code"]: x.get("script", "latin") for x in languages}
    english = scripts.get("en", "latin")
    return {
        x["code"]: float(x.get("overlap", math.nan)) if scripts[x["code"]] == english else 0.0
        for x in languages
    }


def xtreme_table(
    rows: pd.DataFrame, categories: Mapping[str, str] | None = None, exclude: str | None = "en"
) -> pd.DataFrame:
    """XTREME-R layout: one row per encoder (`none`, `scratch`, intermediates), one column per
    target (mean over its test languages, English left out when `exclude` is "en", then over
    seeds, x100), then both benchmark averages (`trainers.metrics.benchmark_averages`); a row
    missing a target has neither. `categories` maps targets to categories ("other" if absent)."""
    from trainers.metrics import benchmark_averages

    target = rows[
        (rows["kind"] == "target") & (rows["split"] == "test") & rows["primary"].astype(bool)
    ]
    if exclude is not None:
        target = target[target["language"] != exclude]
    if target.empty:
        return pd.DataFrame()
    per_seed = target.groupby(["intermediate", "target_task", "seed"])["value"].mean()
    table = per_seed.groupby(["intermediate", "target_task"]).mean().unstack() * 100
    category = {t: (categories or {}).get(t, "other") for t in table.columns}
    tasks = sorted(table.columns, key=lambda t: (category[t], t))
    table = table[tasks]
    averages = pd.DataFrame(
        [
            benchmark_averages(row.to_dict(), category)
            if row.notna().all()
            else {"xtreme_r_avg": np.nan, "plain_mean": np.nan}
            for _, row in table.iterrows()
        ],
        index=table.index,
    )
    table["avg (mean of category means)"] = averages["xtreme_r_avg"]
    table["avg (mean over tasks)"] = averages["plain_mean"]
    order = [n for n in (BASELINE, CONTROL) if n in table.index]
    order += sorted(n for n in table.index if n not in order)
    table = table.reindex(order)
    table.columns = [f"{t} ({category[t]})" if t in tasks else t for t in table.columns]
    table.index.name = "encoder"
    return table.reset_index()


def missing_cells(rows: pd.DataFrame, manifest: dict) -> pd.DataFrame:
    """(intermediate, seed, target) cells of the planned grid without a usable gain: no target
    result, no intermediate result (difficulty), or no same-seed baseline."""
    config = manifest.get("config") or {}
    gains = gain_table(rows)
    target = rows[rows["kind"] == "target"]
    intermediates = config.get("intermediates") or sorted(
        set(rows["intermediate"].dropna()) - {BASELINE, CONTROL}
    )
    seeds = config.get("seeds") or sorted(rows["seed"].unique())
    targets = config.get("targets") or sorted(target["target_task"].dropna().unique())
    usable = set(
        gains.dropna(subset=["gain", "difficulty"])[["intermediate", "seed", "target_task"]]
        .drop_duplicates()
        .itertuples(index=False, name=None)
    )
    have_target = set(
        target[["intermediate", "seed", "target_task"]]
        .drop_duplicates()
        .itertuples(index=False, name=None)
    )
    difficulty = set(difficulty_table(rows)[["intermediate", "seed"]].itertuples(False, None))
    out = []
    for name in intermediates:
        for seed in seeds:
            for task in targets:
                if (name, seed, task) in usable:
                    continue
                if (name, seed, task) not in have_target:
                    why = "no target result"
                elif (name, seed) not in difficulty:
                    why = "no intermediate result (difficulty unknown)"
                else:
                    why = "no same-seed `none` baseline"
                out.append((name, int(seed), task, why))
    return pd.DataFrame(out, columns=["intermediate", "seed", "target_task", "why"])
