"""A FastAPI app whose requests end every way a request can: answered, raising, streamed,
and abandoned by the client mid-stream; served by uvicorn and gunicorn in the histogram tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from concmon_fastapi import install

app = FastAPI()
install(app, prometheus=True)


@app.get("/ok")
async def ok() -> dict[str, bool]:
    return {"ok": True}


@app.get("/boom")
async def boom() -> None:
    raise RuntimeError("the handler fails")


async def _chunks(count: int, then_wait: bool) -> AsyncIterator[bytes]:
    for i in range(count):
        yield f"data: {i}\n\n".encode()
        await asyncio.sleep(0)
    if then_wait:
        # The client hangs up after the first chunk; bounded so a test never hangs on it.
        await asyncio.sleep(60)


@app.get("/stream")
async def stream() -> StreamingResponse:
    return StreamingResponse(_chunks(5, False), media_type="text/event-stream")


@app.get("/abandoned")
async def abandoned() -> StreamingResponse:
    return StreamingResponse(_chunks(1, True), media_type="text/event-stream")
