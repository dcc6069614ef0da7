"""A FastAPI app serving its snapshot, its workers and /metrics, for the URL-source tests."""

from __future__ import annotations

import os

from fastapi import FastAPI

from concmon_fastapi import install

app = FastAPI()
install(app, prometheus=True, json_path="/concurrency")


@app.get("/work")
async def work() -> dict[str, int]:
    return {"pid": os.getpid()}
