"""Which CUDA compute capability a GPU has, from its name (data, not logic).

Engines change behaviour with the architecture: Megatron-LM requires
CUDA_DEVICE_MAX_CONNECTIONS=1 for TP > 1 only below compute capability 10 (Hopper and older;
megatron/training/arguments.py:1453-1479 @d98e8a6), and Transformer Engine's FP8 needs 8.9+.

Source of every number: NVIDIA, "CUDA GPU Compute Capability", https://developer.nvidia.com/cuda-gpus
(A10G is AWS's A10 variant, GA102 like the A10). A GPU is matched by the first word of its name
(split on spaces, dashes, parentheses) that is a key here, so NVML's "NVIDIA A100-SXM4-80GB", a
profile's "H100 SXM5 80GB" and "GB200 (B200 GPU, 1200 W)" all resolve.
"""

from __future__ import annotations

import re

COMPUTE_CAPABILITY: dict[str, float] = {
    # Blackwell
    "GB300": 10.3, "B300": 10.3, "GB200": 10.0, "B200": 10.0,
    # Hopper
    "GH200": 9.0, "H200": 9.0, "H100": 9.0, "H800": 9.0,
    # Ada
    "L40S": 8.9, "L40": 8.9, "L4": 8.9, "4090": 8.9,
    # Ampere
    "A100": 8.0, "A800": 8.0, "A30": 8.0, "A40": 8.6, "A10G": 8.6, "A10": 8.6, "A16": 8.6, "A2": 8.6,
    # Turing, Volta
    "T4": 7.5, "V100": 7.0,
}  # fmt: skip

BLACKWELL = 10.0  # first compute capability of the Blackwell generation
FP8_MIN = 8.9  # Ada and later have FP8 tensor cores (Transformer Engine's FP8 requirement)


def compute_capability(gpu_name: str) -> float | None:
    """The compute capability of a GPU by name; None when the name is not in the table."""
    for word in re.split(r"[\s\-(),/]+", gpu_name.upper()):
        if word in COMPUTE_CAPABILITY:
            return COMPUTE_CAPABILITY[word]
    return None
