"""The fleet tests' app: concmon with /metrics and its own /concurrency, held requests, and
an endpoint of known least duration.

Every ``/sleep`` request sleeps ``SLEEP_S`` before answering, so its duration is above that
bound however loaded the machine is: each observation must fall in a bucket above it. The
app's own snapshot (``/concurrency``) is what the fleet's figures are compared with.
"""

from __future__ import annotations

import asyncio
import os

from fastapi import FastAPI

from concmon_fastapi import install

SLEEP_S = 0.03

app = FastAPI()
install(app, prometheus=True, json_path=True)
_release = asyncio.Event()


@app.get("/work")
async def work() -> dict[str, int]:
    return {"pid": os.getpid()}


@app.get("/sleep")
async def sleep() -> dict[str, float]:
    await asyncio.sleep(SLEEP_S)
    return {"slept": SLEEP_S}


@app.get("/hold")
async def hold() -> dict[str, bool]:
    await _release.wait()
    return {"held": True}


@app.post("/release")
async def release() -> dict[str, bool]:
    _release.set()
    return {"released": True}
