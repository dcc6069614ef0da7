"""The core at work without any web framework: threads doing tracked work, reports on stdout.

Run: python examples/core_demo.py
"""

from __future__ import annotations

import random
import threading
import time

from concmon import init_monitor, shutdown_monitor, track_task


@track_task("/chat/completions")
def chat(rng: random.Random) -> None:
    time.sleep(rng.uniform(0.05, 0.4))
    if rng.random() < 0.1:
        raise RuntimeError("upstream failed")


def worker(seed: int, until: float) -> None:
    rng = random.Random(seed)
    while time.monotonic() < until:
        try:
            chat(rng)
        except RuntimeError:
            pass


def main() -> None:
    monitor = init_monitor(update_interval=1.0, sinks=("stdout",))
    until = time.monotonic() + 3.5
    threads = [threading.Thread(target=worker, args=(i, until)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = shutdown_monitor()
    assert final is not None
    print(f"done: {final.total} requests, {final.failed} failed, peak {final.peak} at once")
    assert monitor.snapshot().active == 0


if __name__ == "__main__":
    main()
