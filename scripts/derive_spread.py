"""Derive tpplan/data/estimate_spread.yaml: the bundled fit's held-apart error, as the interval every
estimate on bundled parameters carries (tpplan/costmodel/spread.py).

    .venv/bin/python scripts/derive_spread.py            # rewrite the file
    .venv/bin/python scripts/derive_spread.py --check    # exit 1 if it would change

The split is `make bench`'s (bench/bench_costmodel.py `alternate_rows`): dgx-h100's serving parameters
fitted afresh on every other row of ../shared/reference/serving/silicon_calibration.csv (the
calibration set: vLLM 0.12.0 Qwen3-32B, TensorRT-LLM 1.0.0rc3 Llama-3.1-8B, H100 SXM) and judged on
the rows in between. Per engine and pooled (`*`, for engines with no measurement of their own), the
10th and 90th percentiles of measured / predicted TPOT and TTFT. Re-run it when the serving model or
its fit changes. The tool itself never reads ../shared; only this script, the bench and tests do.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bench_costmodel import SILICON, alternate_rows  # noqa: E402
from tpplan.costmodel.spread import POOLED, SPREAD_DATA, spread_of  # noqa: E402

SOURCE = (
    "scripts/derive_spread.py: dgx-h100 serving parameters fitted on alternate rows of "
    "reference/serving/silicon_calibration.csv, judged on the others (make bench's split)"
)
HEADER = """\
# The bundled fit's held-apart error: every estimate on parameters no calibration of the user's fitted
# carries an interval of its value times these ratios (measured / predicted, 10th-90th percentile).
# Written by scripts/derive_spread.py (re-run it when the serving model or its fit changes). Judged on
# H100 SXM with two models (Qwen3-32B on vLLM, Llama-3.1-8B on TensorRT-LLM): on other GPUs, models and
# engines the error is larger than this, so the interval is a floor, not a bound.
"""


def derive() -> list[dict]:
    rows = alternate_rows(0)  # (point, predicted TPOT, predicted TTFT)
    out = []
    for engine in (POOLED, *sorted({p.engine for p, _, _ in rows})):
        mine = [(p, tpot, ttft) for p, tpot, ttft in rows if engine in (POOLED, p.engine)]
        s = spread_of(
            engine,
            [(tpot, p.tpot_ms) for p, tpot, _ in mine],
            ttft_pairs=[(ttft, p.ttft_ms) for p, _, ttft in mine],
            held_apart=True,
            source=SOURCE,
            basis="assumed",  # an assumption wherever it is applied: no fit of that profile judged it
        )
        out.append(s.model_dump(mode="json"))
    return out


def main(argv: list[str]) -> int:
    if not SILICON.is_file():
        print(f"{SILICON} not found: the reference data must sit beside this checkout", file=sys.stderr)
        return 2
    text = HEADER + yaml.safe_dump({"spreads": derive()}, sort_keys=False, width=200)
    if "--check" in argv:
        same = SPREAD_DATA.is_file() and SPREAD_DATA.read_text() == text
        print("unchanged" if same else f"{SPREAD_DATA} is stale: re-run scripts/derive_spread.py")
        return 0 if same else 1
    SPREAD_DATA.write_text(text)
    print(f"wrote {SPREAD_DATA}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
