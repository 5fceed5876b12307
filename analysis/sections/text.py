"""How the report writes numbers and lists: fixed decimals, p-values, counts with plurals."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd


def num(value: float, digits: int, sign: bool = False) -> str:
    """`value` at `digits` decimals (a sign with `sign`); "n/a" for NaN."""
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def p_value(value: float) -> str:
    """Three significant digits, "< 0.0001" below that, "n/a" when undefined."""
    if not math.isfinite(value):
        return "n/a"
    if value < 1e-4:
        return "< 0.0001"
    return f"{value:.3g}"


def p_is(value: float) -> str:
    """'p = 0.0123' or 'p < 0.0001', for running text."""
    text = p_value(value)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def listing(values: Sequence[object]) -> str:
    return f"{len(values)} ({', '.join(map(str, values)) or 'none'})"


def count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def short_list(values: Sequence[object], most: int = 12) -> str:
    shown = ", ".join(map(str, values[:most]))
    return shown + (f" and {len(values) - most} more" if len(values) > most else "")


def formatted(table: pd.DataFrame, digits: dict[str, int], na: str = "") -> pd.DataFrame:
    """Strings for display: fixed decimals per column, `na` (blank by default) for NaN."""
    out = table.copy()
    for column, d in digits.items():
        if column in out:
            out[column] = [na if pd.isna(v) else f"{float(v):.{d}f}" for v in out[column].tolist()]
    return out.astype(str).replace({"None": "", "nan": ""})
