"""What the store holds: the design's counts, missing cells, problems reading the store, the
trials that errored or were skipped, and the run's provenance."""

from __future__ import annotations

import pandas as pd

from analysis.analyse import Analysis
from analysis.render import Block, literal
from analysis.results import BASELINE, CONTROL, Run, trial_counts
from analysis.sections.text import listing

MAX_LISTED = 20  # errored/skipped trials listed one by one; the rest are counted


def design(a: Analysis) -> list[Block]:
    """Counts of what the store holds and what is missing, then every recorded problem."""
    rows = a.run.rows
    target = rows[rows["kind"] == "target"]
    intermediates = sorted(set(rows["intermediate"].dropna()) - {BASELINE, CONTROL}, key=str)
    counts = trial_counts(a.run)
    usable = a.tested.dropna(subset=["gain", "difficulty"])
    unused = (
        " (the rest are English rows, lack a same-seed baseline or a difficulty"
        f"{', or share training data' if len(a.shared) and a.confounded == 'exclude' else ''})"
        if len(usable) < len(a.gains)
        else ""
    )
    shared_use = "excluded from" if a.confounded == "exclude" else "kept in"
    items = [
        ("intermediate tasks", f"{len(intermediates)} ({', '.join(intermediates) or 'none'})"),
        ("seeds", listing(sorted(target["seed"].unique()))),
        ("target tasks", listing(sorted(target["target_task"].dropna().unique()))),
        ("languages", listing(sorted(target["language"].dropna().unique()))),
        ("`none` baseline scores (seed x target x language)", str(_scores(target, BASELINE))),
        ("`scratch` control scores (seed x target x language)", str(_scores(target, CONTROL))),
        ("gain rows used by the models", f"{len(usable)} of {len(a.gains)}{unused}"),
        (
            f"(intermediate, target) pairs sharing English training data ({shared_use} the tests)",
            str(len(a.shared)),
        ),
        ("trials planned (excluding pretraining)", str(counts["planned"])),
        ("trials finished", str(counts["finished"])),
        ("trials errored", str(counts["errored"])),
        ("trials skipped", str(counts["skipped"])),
        ("trials missing (no result, no status)", str(counts["missing"])),
    ]
    if counts["unplanned"]:
        items.append(("results of trials not in the manifest", str(counts["unplanned"])))
    items.append(("(intermediate, seed, target) cells without usable gains", str(len(a.missing))))
    table = pd.DataFrame(items, columns=["", "count"])
    blocks = [Block("table", table=table)]
    if len(a.missing):
        listed = a.missing.head(MAX_LISTED * 5)
        blocks += [
            Block("p", "Missing cells (a partial sweep is analysed with the cells it has):"),
            Block("table", table=listed.astype(str)),
        ]
        if len(a.missing) > len(listed):
            blocks.append(Block("p", f"... and {len(a.missing) - len(listed)} more."))
    if a.run.problems:
        blocks += [
            Block("p", "Problems reading the store:"),
            Block("list", items=[literal(p) for p in a.run.problems]),
        ]
    for part in ("errored", "skipped"):
        reasons = a.run.status[part]
        if reasons:
            listed = [f"`{k}`: {literal(v)}" for k, v in list(reasons.items())[:MAX_LISTED]]
            if len(reasons) > MAX_LISTED:
                listed.append(f"... and {len(reasons) - MAX_LISTED} more")
            blocks += [Block("p", f"Trials {part}:"), Block("list", items=listed)]
    return blocks


def _scores(target: pd.DataFrame, intermediate: str) -> int:
    picked = target[(target["intermediate"] == intermediate) & target["primary"]]
    return len(picked.drop_duplicates(["seed", "target_task", "language"]))


def provenance(run: Run) -> list[Block]:
    manifest = run.manifest
    versions = manifest.get("versions") or {}
    items = [
        f"run: {manifest.get('name', 'unknown')}",
        f"created: {manifest.get('created', 'unknown')}",
        f"git commit: {manifest.get('git_commit') or 'unknown'}",
        "versions: " + (", ".join(f"{k} {v}" for k, v in versions.items()) or "unknown"),
    ]
    return [Block("list", items=items)]
