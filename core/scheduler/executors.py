"""Fixed-size executors: threads for GIL-releasing native code, processes for GIL-holding Python.

Their size comes from settings and never from load: with every worker pre-started, the number
of threads is the same with 0 or 1000 connected clients.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

log = logging.getLogger(__name__)


def _noop() -> None:
    return None


class Executors:
    def __init__(self, thread_workers: int, process_workers: int) -> None:
        self.thread_workers = thread_workers
        self.process_workers = process_workers
        self.threads = ThreadPoolExecutor(thread_workers, thread_name_prefix="xiaoyou-job")
        self.processes: ProcessPoolExecutor | None = None
        if process_workers:
            self.processes = self._new_process_pool()

    def _new_process_pool(self) -> ProcessPoolExecutor:
        # spawn: forking a process that runs threads can deadlock the child.
        return ProcessPoolExecutor(
            self.process_workers, mp_context=multiprocessing.get_context("spawn")
        )

    async def prewarm(self) -> None:
        """Start every thread (and process) now, so their count never changes under load."""
        loop = asyncio.get_running_loop()
        barrier = threading.Barrier(self.thread_workers, timeout=10)
        await asyncio.gather(
            *(loop.run_in_executor(self.threads, barrier.wait) for _ in range(self.thread_workers))
        )
        if self.processes is not None:
            await asyncio.gather(
                *(loop.run_in_executor(self.processes, _noop) for _ in range(self.process_workers))
            )

    def replace_broken_process_pool(self) -> None:
        """A worker process died: the pool is unusable; start a fresh one for later jobs."""
        old = self.processes
        if old is not None:
            old.shutdown(wait=False, cancel_futures=True)
        self.processes = self._new_process_pool()
        log.warning("process pool was broken (a worker died); replaced it")

    def shutdown(self) -> None:
        self.threads.shutdown(wait=False, cancel_futures=True)
        if self.processes is not None:
            self.processes.shutdown(wait=False, cancel_futures=True)
