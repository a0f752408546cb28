"""Dynamic micro-batching: concurrent requests merged into one forward pass, run off the event loop.

Each request becomes a `Job` (its inputs and a future) in a bounded waiting list. One collector task takes the
oldest job, then waits at most `max_wait_s` for more jobs with the same key (same model, same route, same
options) until the batch holds `max_batch` inputs, and hands the batch to a single worker thread: the event
loop keeps answering (`/health`, `/metrics`, refusals) while the model runs, and the model is never called
from two threads at once. Jobs that arrive during a forward pass wait for the next one, so under load batches
fill without waiting. A job larger than `max_batch` runs alone; `max_batch=1` turns batching off.

A fault in one batch fails that batch's jobs only (their futures get the exception); a job whose client went
away (its future cancelled) is dropped before it runs. Nothing here knows about HTTP or models.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Optional

__all__ = ["MicroBatcher", "Overloaded", "Stopped"]

RunBatch = Callable[[Hashable, list[Any]], list[Any]]   # (key, inputs) -> one output per input, in order


class Overloaded(Exception):
    """The waiting list is full: the caller should answer 429 and let the client retry."""


class Stopped(Exception):
    """The batcher was stopped before the job ran (the server is shutting down)."""


@dataclass
class Job:
    key: Hashable
    items: list[Any]
    future: asyncio.Future


class MicroBatcher:
    def __init__(self, run_batch: RunBatch, *, max_batch: int = 32, max_wait_s: float = 0.005,
                 max_queue: int = 256, on_batch: Optional[Callable[[int, float], None]] = None,
                 thread_init: Optional[Callable[[], None]] = None) -> None:
        if max_batch < 1 or max_queue < 1 or max_wait_s < 0:
            raise ValueError(f"max_batch and max_queue must be >= 1 and max_wait_s >= 0, got {max_batch}, "
                             f"{max_queue}, {max_wait_s}")
        self.run_batch, self.max_batch, self.max_wait_s, self.max_queue = run_batch, max_batch, max_wait_s, max_queue
        self.on_batch = on_batch                  # called with (inputs in the batch, seconds of the forward pass)
        self.thread_init = thread_init            # run once in the worker thread, before its first batch
        self._waiting: deque[Job] = deque()
        self._wake = asyncio.Event()
        self._task: Optional[asyncio.Task] = None
        self._executor: Optional[ThreadPoolExecutor] = None

    @property
    def depth(self) -> int:
        """Jobs waiting for a batch (the one running not counted)."""
        return len(self._waiting)

    def start(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tunelab-infer",
                                            initializer=self.thread_init)
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="tunelab-batcher")

    async def submit(self, key: Hashable, items: list[Any]) -> list[Any]:
        """The outputs for `items` (one each, in order); raises Overloaded when the waiting list is full, the
        batch's exception when its forward pass failed, Stopped when the batcher stopped first."""
        if self._task is None or self._task.done():
            raise Stopped("the batcher is not running")
        if len(self._waiting) >= self.max_queue:
            raise Overloaded(f"{len(self._waiting)} requests are already waiting (the queue holds {self.max_queue})")
        job = Job(key, list(items), asyncio.get_running_loop().create_future())
        self._waiting.append(job)
        self._wake.set()
        return await job.future

    async def stop(self) -> None:
        """Stop collecting; jobs still waiting fail with Stopped. The batch running (if any) finishes first."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._fail(list(self._waiting), Stopped("the server is shutting down"))
        self._waiting.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    async def _loop(self) -> None:
        while True:
            batch = await self._collect()
            await self._run(batch)

    async def _collect(self) -> list[Job]:
        """The next batch: the oldest live job, and those of the same key that arrive within max_wait_s."""
        loop = asyncio.get_running_loop()
        while True:
            self._drop_cancelled()
            if self._waiting:
                break
            self._wake.clear()
            await self._wake.wait()
        first = self._waiting[0]
        deadline = loop.time() + self.max_wait_s
        batch = self._matching(first)
        while sum(len(j.items) for j in batch) < self.max_batch and loop.time() < deadline:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), deadline - loop.time())
            except asyncio.TimeoutError:
                pass
            batch = self._matching(first)
        for job in batch:
            self._waiting.remove(job)
        return batch

    def _matching(self, first: Job) -> list[Job]:
        """`first` and the later waiting jobs of its key that fit in max_batch inputs, oldest first."""
        batch, size = [first], len(first.items)
        for job in self._waiting:
            if job is not first and job.key == first.key and size + len(job.items) <= self.max_batch \
                    and not job.future.done():
                batch.append(job)
                size += len(job.items)
        return batch

    @staticmethod
    def _fail(batch: list[Job], err: BaseException) -> None:
        for job in batch:
            if not job.future.done():
                job.future.set_exception(err)

    def _drop_cancelled(self) -> None:
        for job in [j for j in self._waiting if j.future.done()]:
            self._waiting.remove(job)

    async def _run(self, batch: list[Job]) -> None:
        items = [item for job in batch for item in job.items]
        started = time.perf_counter()
        try:
            outputs = await asyncio.get_running_loop().run_in_executor(self._executor, self.run_batch,
                                                                       batch[0].key, items)
            if len(outputs) != len(items):
                raise RuntimeError(f"the model returned {len(outputs)} outputs for {len(items)} inputs")
        except asyncio.CancelledError:  # stop() while the batch ran: its callers are told, not left waiting
            self._fail(batch, Stopped("the server stopped during the forward pass"))
            raise
        except Exception as err:  # noqa: BLE001 - one batch's fault fails that batch only
            self._fail(batch, err)
            return
        finally:
            if self.on_batch is not None:
                self.on_batch(len(items), time.perf_counter() - started)
        start = 0
        for job in batch:
            if not job.future.done():
                job.future.set_result(outputs[start:start + len(job.items)])
            start += len(job.items)
