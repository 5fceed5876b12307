"""The report's "Trial health" section: which fine-tunes learned, which were restarted, which
were left out, and every target trial's English dev, English test and zero-shot score per seed.

Reads only the loaded run (analysis.results.Run): its rows, the rows left out as unhealthy and
the fits table (sweep.schema.FITS). The rule itself is trainers.health's; it is restated here.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from analysis.render import Block, literal
from analysis.results import Run, health_policy


def trial_health(run: Run) -> pd.DataFrame:
    """One row per trial with a fit: stage, label, state (healthy, restarted, excluded, flagged,
    skipped), restarts and the reason of its last failed attempt."""
    fits = run.fits
    if fits.empty:
        return pd.DataFrame(
            columns=["kind", "intermediate", "seed", "target_task", "state", "restarts", "reason"]
        )
    flag = health_policy(run.manifest) == "flag"
    out = []
    for key, part in fits.groupby("trial_key", sort=False):
        first = part.iloc[0]
        judged = part[part["part"] != "null"]
        kept = judged[judged["kept"]]
        restarts = int(judged["attempt"].max()) if len(judged) else 0
        failed = judged[~judged["healthy"]]
        if (judged["attempt"] == -1).any():
            state = "skipped"
        elif kept["healthy"].all():
            state = "restarted" if restarts > 0 else "healthy"
        else:
            state = "flagged" if flag else "excluded"
        out.append(
            {
                "kind": first["kind"],
                "intermediate": first["intermediate"],
                "seed": int(first["seed"]),
                "target_task": first["target_task"],
                "state": state,
                "restarts": max(restarts, 0),
                "reason": failed["reason"].iloc[-1] if len(failed) else None,
                "trial_key": key,
            }
        )
    return pd.DataFrame(out)


def left_out(run: Run) -> int:
    """Trials the analysis does not use because of health: excluded ones and skipped children."""
    table = trial_health(run)
    return int(table["state"].isin(["excluded", "skipped"]).sum()) if len(table) else 0


def headline_note(run: Run) -> str:
    """One sentence for under the headline: how many trials it is built from, how many not."""
    table = trial_health(run)
    if table.empty:
        return "No fine-tune of this run recorded its health (written before health checks)."
    n, out = len(table), left_out(run)
    flagged = int((table["state"] == "flagged").sum())
    text = f"Built from the {n - out} healthy trials of {n}"
    if out:
        text += f"; {out} left out as unhealthy or trained on an unhealthy encoder"
    if flagged:
        text += f"; {flagged} degenerate trials kept and flagged (`health.policy: flag`)"
    return text + " (see Trial health)."


def counts(table: pd.DataFrame) -> pd.DataFrame:
    """Per stage: trials by state."""
    states = ["healthy", "restarted", "excluded", "flagged", "skipped"]
    grid = pd.crosstab(table["kind"], table["state"]).reindex(columns=states, fill_value=0)
    grid.insert(0, "trials", grid.sum(axis=1))
    return grid.rename_axis(None, axis=1).reset_index().rename(columns={"kind": "stage"})


def per_seed(run: Run) -> pd.DataFrame:
    """Every target trial (left-out ones included): English dev (selected epoch), English test
    and mean zero-shot test score in its primary metric, by seed."""
    rows = pd.concat([run.rows, run.excluded], ignore_index=True)
    target = rows[(rows["kind"] == "target") & rows["primary"].astype(bool)]
    test = target[target["split"] == "test"]
    if test.empty:
        return pd.DataFrame()
    keys = ["target_task", "intermediate", "seed"]
    en = test[test["language"] == "en"].groupby(keys)["value"].first().rename("en test")
    zero = test[test["language"] != "en"].groupby(keys)["value"].mean().rename("zero-shot mean")
    dev = test.groupby(keys)["dev_score"].first().rename("en dev")
    healthy = test.groupby(keys)["healthy"].all().map({True: "", False: "unhealthy"})
    table = pd.concat([dev, en, zero, healthy.rename("health")], axis=1).reset_index()
    return table.sort_values(keys).reset_index(drop=True)


def _label(r: Any) -> str:
    return f"{r.kind} {r.intermediate}" + (f"/{r.target_task}" if pd.notna(r.target_task) else "")


def section(run: Run) -> list[Block]:
    """The section's blocks."""
    table = trial_health(run)
    config = run.manifest.get("config") or {}
    policy = health_policy(run.manifest)
    health = config.get("health") or {}
    alpha = health.get("alpha", 0.01)
    rule = (
        "A fine-tune is degenerate when its selected English dev score is not clearly above the "
        "better of chance and the majority baseline (a one-sided binomial test at the dev set's "
        f"size, level {alpha}; trainers/health.py states the rule for every metric family), or "
        "when its training loss did not fall. "
    )
    rule += (
        f"Policy `restart`: a degenerate fine-tune is trained again with a restart seed derived "
        f"from the trial seed, up to {health.get('restarts', 2)} times; a trial that stays "
        "degenerate is left out of the analysis, and targets on its encoder are skipped."
        if policy == "restart"
        else "Policy `flag`: degenerate trials are kept in the tests and flagged here."
    )
    blocks = [Block("p", rule)]
    if table.empty:
        return [*blocks, Block("p", headline_note(run))]
    blocks.append(Block("table", table=counts(table)))
    notable = table[table["state"] != "healthy"]
    if len(notable):
        items = [
            f"{_label(r)} seed {r.seed}: "
            + ("healthy" if r.state == "restarted" else r.state)
            + (f" after {r.restarts} restart{'s' if r.restarts != 1 else ''}" if r.restarts else "")
            + (f" ({literal(r.reason)})" if pd.notna(r.reason) else "")
            for r in notable.itertuples()
        ]
        blocks.append(Block("list", items=items))
    else:
        blocks.append(Block("p", "Every fine-tune learned on its first attempt."))
    seeds = per_seed(run)
    if len(seeds):
        shown = seeds.copy()
        for column in ("en dev", "en test", "zero-shot mean"):
            shown[column] = shown[column].map(lambda v: f"{v:.3f}" if pd.notna(v) else "")
        blocks.append(
            Block(
                "p",
                "Every target trial, per seed: English dev (selected epoch) and English test in "
                "the target's primary metric, and the mean over its zero-shot languages.",
            )
        )
        blocks.append(Block("table", table=shown))
    return blocks
