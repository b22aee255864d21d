"""How COHORT_GROWTH (γ in the cohort size 1 + κ·(n − 1)^γ, tpplan/costmodel/serving.py) was chosen:
for each γ, refit the serving parameters on half of the calibration set and judge on the other half,
both ways (bench/bench_regret.py's two folds), and print the out-of-fit TTFT and TPOT error and the
decision regret per engine.

    .venv/bin/python scripts/choose_cohort_growth.py            # γ in 0.5, 0.6, ..., 1.0 (~5 min)
    .venv/bin/python scripts/choose_cohort_growth.py 0.7 1.0

Reads ../shared/reference/serving/silicon_calibration.csv (not shipped with the tool). The choice is
made on the same folds `make bench` reports, so the chosen γ's figures there are slightly optimistic.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import bench_costmodel, bench_regret  # noqa: E402
from tpplan.costmodel import serving  # noqa: E402

GAMMAS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def _median_pct(pairs) -> float:
    return 100 * statistics.median(abs(p / m - 1) for p, m in pairs)


def _p90_pct(pairs) -> float:
    errs = sorted(abs(p / m - 1) for p, m in pairs)
    return 100 * errs[round(0.9 * (len(errs) - 1))]


def main(argv: list[str]) -> int:
    if not bench_regret.REFERENCE.is_dir():
        print("../shared/reference is not beside this checkout", file=sys.stderr)
        return 2
    gammas = [float(a) for a in argv] or GAMMAS
    shipped = serving.COHORT_GROWTH
    print("gamma  engine   TTFT median  TTFT p90  TPOT median  regret (point)  missed  no pick")
    try:
        for g in gammas:
            serving.COHORT_GROWTH = g
            bench_costmodel.alternate_rows.cache_clear()  # the fits of the previous γ
            judged = bench_regret.cross_fit()
            for engine in sorted({j.point.engine for j in judged}):
                mine = [j for j in judged if j.point.engine == engine]
                ttft = [(j.ttft_ms, j.point.ttft_ms) for j in mine]
                tpot = [(j.tpot_ms, j.point.tpot_ms) for j in mine]
                o = bench_regret.regret(mine, high_end=False)
                print(
                    f"{g:5.2f}  {engine:<7} {_median_pct(ttft):11.1f}% {_p90_pct(ttft):8.1f}% "
                    f"{_median_pct(tpot):11.1f}% {100 * statistics.mean(o.regrets):14.1f}% {o.missed:7d} "
                    f"{o.no_pick:8d}",
                    flush=True,
                )
    finally:
        serving.COHORT_GROWTH = shipped
        bench_costmodel.alternate_rows.cache_clear()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
