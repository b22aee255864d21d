"""`tpplan detect`: this machine's topology read into a hardware profile."""

from __future__ import annotations

from pathlib import Path

from .. import io, topology
from ..errors import ConfigError
from ..records import Detection
from ..records.requests import DetectRequest


def detect(
    out: Path | None, *, nodes: int | None = None, price_usd_per_gpu_hour: float | None = None
) -> Detection:
    """Read this machine (NVML + sysfs, or its CPUs when no GPU answers) and write its profile to `out`."""
    req = io.validate_request(
        DetectRequest, {"nodes": nodes, "price_usd_per_gpu_hour": price_usd_per_gpu_hour}
    )
    if out is not None and out.is_dir():
        raise ConfigError(
            "is a directory",
            file=str(out),
            field="out",
            expected="a file path such as profile.yaml",
            request=True,
        )
    found = topology.detect(
        [p for _, p in io.bundled_profiles()], req.nodes, price_usd_per_gpu_hour=req.price_usd_per_gpu_hour
    )
    if out is not None:
        header = (
            f"# Written by `tpplan detect` on {found.profile.topology.host}. Every number says where it came\n"
            "# from (basis: measured here, derived, published in a bundled profile, or assumed).\n"
            f"# Use it: tpplan candidates MODEL --profile {out}"
        )
        try:
            io.write_text(out, io.to_yaml(found.profile, header, compact=True))
        except OSError as e:
            raise ConfigError(
                f"cannot be written ({e.strerror})", file=str(out), field="out", request=True
            ) from None
    return found
