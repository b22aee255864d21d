"""The interval every estimate on bundled parameters carries, re-measured: the held-apart spread of the
calibration set's split (scripts/derive_spread.py) beside what tpplan/data/estimate_spread.yaml ships.
A difference means the serving model or its fit changed since the file was written: re-run the script."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    sys.path.insert(0, str(REPO))
    import scripts.derive_spread as ds
    from tpplan.costmodel.spread import bundled_spreads
    from tpplan.specs import ServingSpread

    if not ds.SILICON.is_file():
        print("skipped: ../shared/reference is not beside this checkout")
        return
    shipped = bundled_spreads()
    stale = False
    print("held-apart measured/predicted, 10th-90th percentile (fresh | shipped):")
    for d in ds.derive():
        fresh, old = ServingSpread.model_validate(d), shipped.get(d["engine"])
        same = old is not None and old.model_dump() == fresh.model_dump()
        stale |= not same
        print(f"  {fresh.engine:<7} {fresh.describe()} | {old.describe() if old else 'none'}")
    print("  shipped file is current" if not stale else "  STALE: re-run scripts/derive_spread.py")
