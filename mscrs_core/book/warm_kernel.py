"""One kernel kept for the successive points of a sweep worker.

Every point of a sweep is a run chapter executed by papermill. In a fresh kernel each point paid about 11 s before
and after its own work on one core (the measurement below): the kernel's start, the imports of torch,
transformers, torch-geometric, pandas and seaborn, and the figure and glue machinery. Chapter 5's warm-up-alone
points compute for about 18 s each and chapter 4's reference rows for a few seconds, so the fixed part was a third
of the recommendation track. A :class:`WarmKernel` starts one kernel and executes point after point in it; before
each point after the first it empties the kernel's namespace (IPython's ``reset``, a new session, so the record
notebook counts its cells from 1 as a fresh kernel does) and closes every figure, so a point sees none of the
previous point's names. What stays are the imported modules: the library keeps no state between runs that a run
reads without setting it first (each run seeds torch, numpy and Python's ``random`` itself, sets the data root and
the checksum policy, and a worker's kernel keeps the thread count it started with), so a point's numbers are those
of a fresh kernel (``tests/test_warm_kernel.py`` compares them).

Memory: the chapters' kernels keep freed memory for reuse (:data:`~mscrs_core.book.runner.KERNEL_MALLOC_TUNABLES`),
so a kernel that ran a language-model point holds that point's peak. A kernel whose resident memory exceeds
:data:`RETIRE_RSS_BYTES` after a point is shut down, and the next point starts a fresh one; so is a kernel whose
point failed.

Measured (``benchmarks/warm_kernel.py``, one thread, AVX512-BF16 processor): 10.5 s per untrained graph-scorer point
on INSPIRED in a fresh kernel each (the run itself 1.2 s) against 3.2 s in one kept kernel; a warm-up-alone MSCRS point
26.4 s against 20.6 s (its run 16.5 s); the same numbers both ways.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

#: a kernel holding more resident memory than this after a point is shut down instead of reused (4 GiB: above a
#: warm-up or reference run, below a language-model run that loaded the backbone and the context-state banks)
RETIRE_RSS_BYTES = 4 * 1024 ** 3

#: what runs in a kept kernel before the next point: its names emptied (a new session: the record counts from 1),
#: every figure closed, memory returned to the heap
RESET_CODE = ("get_ipython().reset(new_session=True, aggressive=False)\n"
              "import gc as _gc, matplotlib.pyplot as _plt\n"
              "_plt.close('all')\n"
              "del _plt\n"
              "_gc.collect()\n"
              "del _gc\n")


class WarmKernel:
    """A kernel for :func:`~mscrs_core.book.runner.run_chapter` to execute chapter after chapter in.

    ``log_dir`` receives the kernel's own stderr as ``.kernel-<pid>-<n>.log`` (one file per kernel started); use as a
    context manager, or call :meth:`shutdown`."""

    def __init__(self, log_dir: str | os.PathLike, retire_rss: int = RETIRE_RSS_BYTES):
        self.log_dir = Path(log_dir)
        self.retire_rss = retire_rss
        self.manager: Any = None
        self.runs = 0  # points executed in the current kernel
        self.started = 0  # kernels started by this object
        self._log = None

    def manager_for_run(self) -> Any:
        """The kernel manager for the next chapter: the kept kernel after emptying its namespace, else a new manager
        whose kernel papermill starts (with the chapters' environment, :func:`~.runner.kernel_environment`)."""
        if self.manager is not None and self.manager.has_kernel:
            self._reset()
            return self.manager
        from .runner import _kernel_manager

        self.shutdown()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.started += 1
        self._log = open(self.log_dir / f".kernel-{os.getpid()}-{self.started}.log", "w")
        self.manager = _kernel_manager(self._log)(kernel_name="python3")
        self.runs = 0
        return self.manager

    def after_run(self, ok: bool) -> None:
        """Keep the kernel for the next chapter, unless the chapter failed or the kernel outgrew ``retire_rss``."""
        self.runs += 1
        if not ok or self.resident_bytes() > self.retire_rss:
            self.shutdown()

    def resident_bytes(self) -> int:
        """The kernel process's resident memory (0 when there is no kernel)."""
        import psutil

        pid = self._pid()
        if pid is None:
            return 0
        try:
            return psutil.Process(pid).memory_info().rss
        except psutil.NoSuchProcess:
            return 0

    def _pid(self) -> int | None:
        prov = getattr(self.manager, "provisioner", None) if self.manager is not None else None
        proc = getattr(prov, "process", None)
        return getattr(proc, "pid", None)

    def _reset(self) -> None:
        from jupyter_client.blocking import BlockingKernelClient

        kc = BlockingKernelClient()
        kc.load_connection_info(self.manager.get_connection_info())
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=60)
            # store_history=False: the reset cell itself does not advance the new session's count
            reply = kc.execute_interactive(RESET_CODE, timeout=300, store_history=False, output_hook=lambda m: None)
        finally:
            kc.stop_channels()
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"resetting the kept kernel failed: {reply['content'].get('evalue', reply['content'])}")

    def shutdown(self) -> None:
        """Stop the kernel (if any) and close its log."""
        if self.manager is not None and self.manager.has_kernel:
            from jupyter_core.utils import run_sync

            run_sync(self.manager.shutdown_kernel)(now=True)
        self.manager = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> "WarmKernel":
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
