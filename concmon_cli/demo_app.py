"""The demo's application: a small OpenAI-style proxy in front of a simulated upstream.

The upstream serves a limited number of generations at once (like a model server with a
fixed batch size), so a burst of clients queues in front of it; a few calls fail the way a
real upstream does (a 502 from the proxy). ``/v1/chat/completions`` and ``/v1/completions``
answer in one JSON body or, with ``"stream": true``, as server-sent events token by token,
which keeps a request active until its last chunk. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.requests import ClientDisconnect

from concmon import get_monitor

UPSTREAM_QUEUE = "upstream"


class UpstreamError(Exception):
    """The simulated model server failed this call."""


class SimulatedUpstream:
    """At most ``parallel`` generations at once; waiting callers are counted as queued."""

    def __init__(
        self, parallel: int = 4, error_rate: float = 0.05, token_delay: float = 0.02, seed: int = 7
    ) -> None:
        self.parallel = parallel
        self.error_rate = error_rate
        self.token_delay = token_delay
        self._slots: asyncio.Semaphore | None = None
        self._rng = random.Random(seed)

    def _semaphore(self) -> asyncio.Semaphore:
        if self._slots is None:  # created on the serving loop, not at import
            self._slots = asyncio.Semaphore(self.parallel)
        return self._slots

    async def generate(self, tokens: int) -> AsyncIterator[str]:
        slots = self._semaphore()
        async with get_monitor().queued("upstream", source=UPSTREAM_QUEUE):
            await slots.acquire()
        try:
            if self._rng.random() < self.error_rate:
                await asyncio.sleep(self.token_delay * 3)
                raise UpstreamError("upstream returned 500")
            for i in range(tokens):
                await asyncio.sleep(self.token_delay * self._rng.uniform(0.5, 1.5))
                yield f"tok{i} "
        finally:
            slots.release()


def _tokens(body: dict[str, Any]) -> int:
    value = body.get("max_tokens", 16)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 256:
        raise HTTPException(400, "max_tokens must be a whole number from 1 to 256")
    return value


def create_app(upstream: SimulatedUpstream | None = None) -> FastAPI:
    """The proxy app; the caller wraps or installs concmon around it."""
    app = FastAPI(title="concmon demo proxy")
    model = upstream or SimulatedUpstream()

    async def complete(request: Request, kind: str) -> Any:
        try:
            body = await request.json()
        except ClientDisconnect:
            # The client left before sending its body (the demo's clients are cancelled when
            # it ends): nobody is there to answer, and concmon has counted it cancelled.
            return Response(status_code=499)
        except ValueError:
            raise HTTPException(400, "the body must be JSON") from None
        if not isinstance(body, dict):
            raise HTTPException(400, "the body must be a JSON object")
        tokens = _tokens(body)
        created = int(time.time())
        if body.get("stream"):
            stream = model.generate(tokens)
            try:
                first = await anext(stream)
            except UpstreamError as exc:
                return JSONResponse({"error": str(exc)}, status_code=502)

            async def events() -> AsyncIterator[bytes]:
                text = first
                while True:
                    chunk = {"object": f"{kind}.chunk", "created": created, "text": text}
                    yield f"data: {json.dumps(chunk)}\n\n".encode()
                    try:
                        text = await anext(stream)
                    except StopAsyncIteration:
                        break
                yield b"data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")
        try:
            text = "".join([token async for token in model.generate(tokens)])
        except UpstreamError as exc:
            return JSONResponse({"error": str(exc)}, status_code=502)
        return {"object": kind, "created": created, "choices": [{"index": 0, "text": text}]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        return await complete(request, "chat.completion")

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        return await complete(request, "text_completion")

    return app
