"""Fail (exit 1) when a fine-tune of a finished run was excluded as unhealthy or skipped for an
unhealthy parent; print the trial-health counts and the per-seed English table either way.

    .venv/bin/python .ci/demo_health.py runs/demo
"""

from __future__ import annotations

import sys

from analysis.health import counts, per_seed, trial_health
from analysis.results import load_run


def main(run: str) -> int:
    table = trial_health(load_run(run))
    if table.empty:
        print(f"{run}: no fine-tune recorded its health", file=sys.stderr)
        return 1
    print(counts(table).to_string(index=False))
    print(per_seed(load_run(run)).to_string(index=False))
    bad = table[table["state"].isin(["excluded", "skipped"])]
    for r in bad.itertuples():
        print(f"unhealthy: {r.kind} {r.intermediate} {r.target_task} seed {r.seed}: {r.reason}")
    print(f"restarts in the whole run: {int(table['restarts'].sum())}")
    return 1 if len(bad) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "runs/demo"))
