"""What machine a benchmark's figures were measured on: the CPU's model and its instruction flags.

>>> isinstance(cpu_model(), str), isinstance(bfloat16_units(), bool)
(True, True)
"""

from __future__ import annotations

import platform


def cpuinfo_field(name: str, path: str = "/proc/cpuinfo") -> str | None:
    """The value of the first `name` line of /proc/cpuinfo (None where there is no such file or line)."""
    try:
        with open(path) as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.split(":", 1)[0].strip() == name), None)
    except OSError:
        return None


def cpu_model() -> str:
    """The CPU's name as the benchmarks' logs give it, e.g. "Intel(R) Xeon(R) Processor @ 2.80GHz"."""
    return cpuinfo_field("model name") or platform.processor() or platform.machine()


def bfloat16_units() -> bool:
    """Whether the CPU multiplies bfloat16 natively (AMX or AVX512_BF16)."""
    flags = (cpuinfo_field("flags") or "").split()
    return "amx_bf16" in flags or "avx512_bf16" in flags
