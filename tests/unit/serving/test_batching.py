"""The micro-batcher on its own (no HTTP, no model): concurrent jobs merge into one call of the batch function
within max_batch, keys never mix, a fault fails only its batch, the waiting list is bounded."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from tunelab.serving.batching import MicroBatcher, Overloaded, Stopped


class Recorder:
    """A batch function that records each call (key, inputs) and doubles its inputs, after `delay` seconds."""

    def __init__(self, delay: float = 0.0, fail_on: object = None) -> None:
        self.calls: list[tuple[object, list[int]]] = []
        self.delay, self.fail_on, self.threads = delay, fail_on, set()

    def __call__(self, key: object, items: list[int]) -> list[int]:
        self.threads.add(threading.get_ident())
        self.calls.append((key, list(items)))
        time.sleep(self.delay)
        if self.fail_on in items:
            raise RuntimeError(f"bad input {self.fail_on}")
        return [2 * i for i in items]


def run(coro):
    return asyncio.run(coro)


async def _gather(batcher: MicroBatcher, jobs: list[tuple[object, list[int]]]) -> list:
    batcher.start()
    try:
        return await asyncio.gather(*(batcher.submit(k, items) for k, items in jobs), return_exceptions=True)
    finally:
        await batcher.stop()


def test_concurrent_jobs_share_one_call_in_a_worker_thread() -> None:
    record = Recorder()
    results = run(_gather(MicroBatcher(record, max_batch=32, max_wait_s=0.05), [("m", [i, i + 100]) for i in range(5)]))
    assert results == [[2 * i, 2 * (i + 100)] for i in range(5)]
    assert len(record.calls) == 1 and sorted(record.calls[0][1]) == sorted(x for i in range(5) for x in (i, i + 100))
    assert threading.get_ident() not in record.threads  # inference never runs on the event loop's thread


def test_thread_init_runs_once_in_the_worker_thread_before_its_first_batch() -> None:
    record, inits = Recorder(), []
    batcher = MicroBatcher(record, max_batch=2, max_wait_s=0.0, thread_init=lambda: inits.append(threading.get_ident()))
    run(_gather(batcher, [("m", [i]) for i in range(6)]))
    assert len(record.calls) >= 3 and inits == list(record.threads)  # one call, in the one thread that ran batches


def test_max_batch_bounds_each_call_and_a_large_job_runs_alone() -> None:
    record = Recorder()
    jobs = [("m", [i]) for i in range(10)] + [("m", list(range(50, 60)))]
    results = run(_gather(MicroBatcher(record, max_batch=4, max_wait_s=0.02), jobs))
    assert results[-1] == [2 * i for i in range(50, 60)]
    assert all(len(items) <= 4 for _, items in record.calls[:-1] if 50 not in items)
    assert [items for _, items in record.calls if 50 in items] == [list(range(50, 60))]


def test_max_batch_1_calls_once_per_job_and_keys_never_mix() -> None:
    record = Recorder()
    run(_gather(MicroBatcher(record, max_batch=1, max_wait_s=0.05), [("a", [1]), ("b", [2]), ("a", [3])]))
    assert sorted(items for _, items in record.calls) == [[1], [2], [3]]
    mixed = Recorder()
    run(_gather(MicroBatcher(mixed, max_batch=32, max_wait_s=0.05), [("a", [1]), ("b", [2]), ("a", [3])]))
    assert sorted((k, sorted(items)) for k, items in mixed.calls) == [("a", [1, 3]), ("b", [2])]


def test_a_fault_fails_only_its_batch_and_the_batcher_goes_on() -> None:
    async def scenario() -> tuple:
        batcher = MicroBatcher(Recorder(fail_on=13), max_batch=1, max_wait_s=0.0)
        batcher.start()
        try:
            outcome = await asyncio.gather(batcher.submit("m", [13]), batcher.submit("m", [1]), return_exceptions=True)
            return outcome, await batcher.submit("m", [2])
        finally:
            await batcher.stop()
    (bad, good), later = run(scenario())
    assert isinstance(bad, RuntimeError) and "bad input 13" in str(bad)
    assert good == [2] and later == [4]


def test_a_full_queue_refuses_at_once() -> None:
    async def scenario() -> list:
        batcher = MicroBatcher(Recorder(delay=0.2), max_batch=1, max_wait_s=0.0, max_queue=2)
        batcher.start()
        try:
            first = asyncio.ensure_future(batcher.submit("m", [0]))
            await asyncio.sleep(0.05)  # the first one runs; two more wait; a fourth is refused
            rest = [asyncio.ensure_future(batcher.submit("m", [i])) for i in (1, 2, 3)]
            return await asyncio.gather(first, *rest, return_exceptions=True)
        finally:
            await batcher.stop()
    results = run(scenario())
    assert results[:3] == [[0], [2], [4]]
    assert isinstance(results[3], Overloaded) and "queue holds 2" in str(results[3])


def test_cancelled_jobs_are_dropped_and_stop_fails_the_waiting_ones() -> None:
    async def scenario() -> tuple:
        record = Recorder(delay=0.2)
        batcher = MicroBatcher(record, max_batch=1, max_wait_s=0.0)
        batcher.start()
        running = asyncio.ensure_future(batcher.submit("m", [0]))
        await asyncio.sleep(0.05)
        gone = asyncio.ensure_future(batcher.submit("m", [1]))
        waiting = asyncio.ensure_future(batcher.submit("m", [2]))
        await asyncio.sleep(0.01)
        gone.cancel()  # its client went away
        assert await running == [0]
        await asyncio.sleep(0.01)
        await batcher.stop()
        return record, await asyncio.gather(waiting, return_exceptions=True)
    record, (waiting,) = run(scenario())
    assert [1] not in [items for _, items in record.calls]
    assert waiting == [4] or isinstance(waiting, Stopped)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(Recorder(), max_batch=0)
