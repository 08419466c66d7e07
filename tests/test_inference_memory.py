"""retain_freed_memory: freed refresh-sized buffers come back without page faults."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

_PROBE = """
import resource, sys
import numpy as np
if sys.argv[1] == "retain":
    from rlfm_edge.inference.memory import retain_freed_memory
    assert retain_freed_memory() and retain_freed_memory()
def refresh():  # a few 4 MiB temporaries alive together, then all freed, as in a forward pass
    temporaries = [np.ones(1 << 19) for _ in range(6)]
    del temporaries
refresh()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    refresh()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _minor_faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt thresholds are glibc's")
def test_freed_buffers_are_reused_without_page_faults():
    pages_per_refresh = 6 * (4 << 20) // 4096
    assert _minor_faults("default") > 5 * pages_per_refresh  # of 20: glibc trims them back to the kernel
    assert _minor_faults("retain") < pages_per_refresh        # kept in the heap and reused
