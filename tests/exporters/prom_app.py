"""A FastAPI app with concmon and /metrics, served by uvicorn for the Prometheus tests."""

from __future__ import annotations

import asyncio
import os

from fastapi import FastAPI

from concmon_fastapi import install

app = FastAPI()
install(app, prometheus=True)
_release = asyncio.Event()


@app.get("/work")
async def work() -> dict[str, int]:
    return {"pid": os.getpid()}


@app.get("/items/{item_id}")
async def item(item_id: int) -> dict[str, int]:
    return {"item": item_id}


@app.get("/hold")
async def hold() -> dict[str, bool]:
    await _release.wait()
    return {"held": True}


@app.post("/release")
async def release() -> dict[str, bool]:
    _release.set()
    return {"released": True}
