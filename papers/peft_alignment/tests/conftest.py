"""bitsandbytes' two CPU paths for 4-bit layers, forced per test, so the suite covers both on any x86-64 CPU."""

from __future__ import annotations

import pytest

CPU_PATHS = ("dequant", "packed")


@pytest.fixture(params=CPU_PATHS)
def bnb_cpu_path(request, monkeypatch) -> str:
    """Force the path of every `Linear4bit` built during the test: bitsandbytes reads `has_avx512bf16()`
    (looked up in bitsandbytes.nn.modules) in `Linear4bit.__init__` and packs only where it was true. The packed
    path runs AVX512-BF16 kernels (on other CPUs bitsandbytes registers no kernel for it), so it is forced only
    where the CPU has them; the dequant path is forced everywhere."""
    import bitsandbytes.functional as bnb_functional
    import bitsandbytes.nn.modules as bnb_modules

    packed = request.param == "packed"
    if packed and not bnb_functional.has_avx512bf16():
        pytest.skip("bitsandbytes' packed CPU path needs AVX512-BF16, which this CPU lacks")
    monkeypatch.setattr(bnb_modules, "has_avx512bf16", lambda: packed)
    return request.param
