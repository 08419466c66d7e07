"""Keep freed heap memory in the process, so a CPU refresh does not page-fault its tensors in again.

A torch forward pass on the CPU allocates a few dozen MB of temporaries and frees them together
at the end. glibc then finds more free memory at the top of its heap than its trim threshold
(or the blocks were mmapped to begin with) and hands it back to the kernel, so every refresh
page-faults its buffers in afresh (tests/test_inference_memory.py counts the faults), which can
double a large torch refresh. ONNX Runtime has its own arena and is unaffected. Raising both
thresholds is the knob PyTorch's CPU tuning guide reaches through jemalloc/tcmalloc; mallopt
does it in place, with no preload. The cost: the process keeps its peak heap instead of
returning it, which on a robot is the behaviour wanted anyway (flat memory, no page-fault
jitter).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20   # glibc's maximum on 64-bit (HEAP_MAX_SIZE / 2)
TRIM_THRESHOLD = 256 << 20
_done: bool | None = None


def retain_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds once per process; False where libc is not glibc."""
    global _done
    if _done is None:
        _done = False
        name = ctypes.util.find_library("c")
        try:
            mallopt = ctypes.CDLL(name).mallopt if name else None
        except (OSError, AttributeError):
            mallopt = None
        if mallopt is not None:
            _done = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
                mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
        if not _done:
            log.info("could not raise malloc thresholds (not glibc): CPU refreshes may page-fault")
    return _done
