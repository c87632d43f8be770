"""What the host CPU can do fast, for choices made once per run (`train.mixed_precision=auto`)."""

from __future__ import annotations

import os

# CPU flags (as /proc/cpuinfo names them) with bfloat16 matmul instructions that
# oneDNN uses: AMX tiles, or AVX512-BF16 dot products (2x float32's peak measured).
BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The first CPU's flags from `cpuinfo` (default: /proc/cpuinfo); empty if unknown."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:  # not Linux
            return frozenset()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def fast_bfloat16_flag(flags: frozenset[str] | None = None) -> str | None:
    """The flag that makes bfloat16 faster than float32 here, or None.

    None also when oneDNN is off (`TF_ENABLE_ONEDNN_OPTS=0`): TF's own kernels
    run bfloat16 1.3-1.5x slower than float32 whatever the CPU (README#Speed).
    """
    if os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1").strip().lower() in ("0", "false"):
        return None
    flags = cpu_flags() if flags is None else flags
    return next((f for f in BF16_FLAGS if f in flags), None)
