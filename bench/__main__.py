"""`make bench`: every figure the issues ask for, measured side by side in one run.

Each `bench/bench_*.py` module has `main() -> None` that prints one titled section.
Run one: `python -m bench costmodel` (matches module names containing the word).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    names = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    if argv:
        names = [n for n in names if any(a in n for a in argv)]
    failed = 0
    for name in names:
        t0 = time.perf_counter()
        print(f"\n=== {name[len('bench_') :]} ===", flush=True)
        try:
            importlib.import_module(f"bench.{name}").main()
        except Exception as e:  # one broken bench must not hide the others' figures
            failed += 1
            print(f"FAILED: {type(e).__name__}: {e}")
        print(f"({time.perf_counter() - t0:.1f} s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
