"""Property: after any mix of request kinds and finishes, every counter adds up exactly."""

from __future__ import annotations

import gc

from hypothesis import given, settings
from hypothesis import strategies as st

from concmon import ConcurrencyMonitor, Outcome
from concmon.testing import check_balanced, check_invariants
from concmon_flask import ConcMon
from tests.flask.apps import build_app
from tests.flask.wsgi_driver import Call

# path, expected outcome when read to the end and closed
KINDS = {
    "ok": ("/", Outcome.OK),
    "item": ("/api/items/4", Outcome.OK),
    "raise": ("/boom", Outcome.FAILED),
    "503": ("/status/503", Outcome.FAILED),
    "404": ("/nowhere", Outcome.OK),
    "stream": ("/stream/4", Outcome.OK),
    "stream_fail": ("/stream-fail", Outcome.FAILED),
}
FINISHES = ("close", "abandon_read", "abandon_partial", "close_partial", "close_twice")

monitor = ConcurrencyMonitor()
app, _ = build_app()
# A logged exception's traceback keeps the calling frames (and the abandoned bodies in them)
# alive for as long as the log capture holds the record; these checks need them collectable.
app.logger.disabled = True
ConcMon(app, monitor=monitor, start_reporter=False)


def _expected(kind: str, finish: str) -> Outcome:
    """A failing status wins; a body the server stopped reading early is a cancellation."""
    if kind in ("raise", "503"):
        return Outcome.FAILED
    if finish.endswith("partial"):
        return Outcome.CANCELLED
    return KINDS[kind][1]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(sorted(KINDS)), st.sampled_from(FINISHES)), max_size=30))
def test_any_mix_of_requests_balances_exactly(plan: list[tuple[str, str]]) -> None:
    """Success, errors, 5xx, 404s, streams read fully or partly, closed or abandoned: exact."""
    # Set on every run: logging.config.dictConfig (uvicorn calls it in other tests) re-enables
    # existing loggers, and a captured record would keep an abandoned body alive.
    app.logger.disabled = True
    monitor.reset()
    open_calls = []
    want = {Outcome.OK: 0, Outcome.FAILED: 0, Outcome.CANCELLED: 0}
    for kind, finish in plan:
        call = Call(app, KINDS[kind][0])
        try:
            call.read(limit=1 if finish.endswith("partial") else None)
        except RuntimeError:
            pass
        if finish.startswith("close"):
            call.close()
            if finish == "close_twice":
                call.close()
        else:
            open_calls.append(call)
        want[_expected(kind, finish)] += 1
        del call
    check_invariants(monitor.snapshot())
    open_calls.clear()
    gc.collect()
    snap = check_balanced(monitor.snapshot())
    assert snap.total == len(plan)
    assert snap.failed == want[Outcome.FAILED]
    assert snap.cancelled == want[Outcome.CANCELLED]
