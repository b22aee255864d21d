"""All-reduce fidelity against published nccl-tests tables (issue 14: median |error| <= 20%).

Per table of tests/data/collectives/: rows, median |error| and worst |error| of the cost model's
estimate, held-apart tables first. Single node: the profile's fitted NCCL curve at the table's rank
count. Across nodes: NCCL's algorithm choice priced by costmodel/nccl.py (a forced NCCL_ALGO is
priced as that algorithm).
"""

from __future__ import annotations

from bench.collective_tables import median_abs_pct, multinode_errors, singlenode_errors

TARGET_PCT = 20.0


def _section(title: str, errors_by_split: dict[str, dict[str, list[float]]]) -> None:
    print(f"{title}: table, split, rows, median |error| %, worst |error| %")
    for split in ("heldout", "fit"):
        for table, errs in sorted(errors_by_split[split].items()):
            worst = 100 * max(abs(e) for e in errs)
            mark = "" if median_abs_pct(errs) <= TARGET_PCT else f"  (above the {TARGET_PCT:g}% target)"
            print(f"  {table:28s} {split:8s} {len(errs):4d} {median_abs_pct(errs):7.1f} {worst:7.1f}{mark}")
    held = [e for errs in errors_by_split["heldout"].values() for e in errs]
    print(f"  all held-apart rows: {len(held)}, median |error| {median_abs_pct(held):.1f}%")


def main() -> None:
    _section("single node", {s: singlenode_errors(s) for s in ("heldout", "fit")})
    _section("across nodes", {s: multinode_errors(s) for s in ("heldout", "fit")})
