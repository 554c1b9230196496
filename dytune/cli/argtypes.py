"""argparse value types that more than one sub-command reads (`dytune eval`, `dytune bench`)."""
from __future__ import annotations

import argparse
from typing import List

__all__ = ["keep_rates_arg"]


def keep_rates_arg(text: str) -> List[float]:
    """A comma list of keep rates in [0, 1] (`--budgets` of `dytune eval` and `dytune bench`)."""
    try:
        rates = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated keep rates, e.g. 0.3,0.5,0.7") from None
    if not rates or not all(0.0 <= r <= 1.0 for r in rates):
        raise argparse.ArgumentTypeError(f"{text!r}: expected keep rates in [0, 1]")
    return rates
