"""The event-loop probe: loop lag, and requests waiting for a worker thread.

Loop lag is how late the loop runs a callback it scheduled: a probe sleeps for ``interval``
and measures how much longer it actually took. A blocking call in an ``async`` endpoint holds
every other request up by exactly that much, and it shows as ``system.loop_lag_ms`` (the
largest lag in the report interval).

Sync endpoints run in anyio's default thread pool (40 threads unless changed); a request that
finds every thread busy waits for one. The probe reads the pool's waiting count on each tick and
reports it as the ``threadpool`` queue, apart from the admission gate's queue.

One probe runs per event loop, however many applications or middleware instances share it. It
measures an asyncio loop: on another backend (trio) it does not run, and ``loop_lag_ms`` stays
empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Callable

from concmon import get_monitor

logger = logging.getLogger("concmon")

THREADPOOL_QUEUE = "threadpool"
"""Queue name of requests waiting for a worker thread."""

_probes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[None]] = (
    weakref.WeakKeyDictionary()
)


def _threadpool_waiting() -> Callable[[], int] | None:
    try:
        from anyio import to_thread
    except ImportError:
        return None

    def waiting() -> int:
        return int(to_thread.current_default_thread_limiter().statistics().tasks_waiting)

    try:
        waiting()
    except (RuntimeError, LookupError):  # not a loop anyio knows: no thread pool to read
        return None
    return waiting


async def _run(interval: float) -> None:
    loop = asyncio.get_running_loop()
    waiting = _threadpool_waiting()
    reported = 0
    try:
        while True:
            start = loop.time()
            await asyncio.sleep(interval)
            lag = loop.time() - start - interval
            monitor = get_monitor()
            monitor.record_loop_lag(lag if lag > 0.0 else 0.0)
            if waiting is not None:
                depth = waiting()
                if depth != reported:
                    monitor.set_queue_depth(depth, THREADPOOL_QUEUE)
                    reported = depth
    finally:
        if reported:
            get_monitor().set_queue_depth(0, THREADPOOL_QUEUE)


def _asyncio_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # another backend (trio): nothing this probe can measure
        return None


def start_probe(interval: float) -> None:
    """Start the probe on the running asyncio loop (idempotent; nothing on another backend)."""
    loop = _asyncio_loop()
    if loop is None:
        return
    task = _probes.get(loop)
    if task is not None and not task.done():
        return
    _probes[loop] = loop.create_task(_run(interval), name="concmon-loop-probe")


async def stop_probe() -> None:
    """Stop the running loop's probe, if any, and wait for it to clear its queue figure."""
    loop = _asyncio_loop()
    task = _probes.pop(loop, None) if loop is not None else None
    if task is None or task.done():
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
