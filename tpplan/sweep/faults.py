"""What went wrong on a rank, as a status and a one-line reason; and the test-only fault injector.

Test-only (never set it otherwise): TPPLAN_TEST_FAULTS="kind:rank:key-part[;...]" makes `rank`
fail in the first timed step of each case whose key contains `key-part`, for real: `exit` ends
the process, `sleep` sleeps past the collective timeout, `oom` allocates 1 PiB.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

# When several ranks report, the root cause wins over its echoes (a dead rank makes its peers see
# "connection closed"; a sleeping one makes them time out). "died" = exited without a report.
PRIORITY = ("oom", "died", "timeout", "failed")


def classify(e: BaseException) -> tuple[str, str]:
    """An exception raised on a rank → (status, one-line reason)."""
    import torch

    text = " ".join(str(e).split()) or type(e).__name__
    text = re.sub(r"^\[[^\]]*\] (err == 0\. )?", "", text)[:300]  # gloo's "[/path/file.cc:553] " prefix
    low = text.lower()
    if isinstance(e, torch.OutOfMemoryError) or "out of memory" in low or "can't allocate memory" in low:
        return "oom", f"out of memory: {text}"
    if isinstance(e, TimeoutError) or "timed out" in low or "timeout" in low:
        return "timeout", f"timed out: {text}"
    return "failed", f"{type(e).__name__}: {text}"


def inject(rank: int, key: str, *, device: Any, timeout_s: float) -> None:
    """Fail here if TPPLAN_TEST_FAULTS asks this rank to, in this case (tests only)."""
    for spec in filter(None, os.environ.get("TPPLAN_TEST_FAULTS", "").split(";")):
        kind, fault_rank, part = spec.split(":", 2)
        if int(fault_rank) != rank or part not in key:
            continue
        if kind == "exit":
            os._exit(17)
        elif kind == "sleep":
            time.sleep(3 * timeout_s + 2)
        elif kind == "oom":
            import torch

            torch.empty(1 << 50, dtype=torch.uint8, device=device)
