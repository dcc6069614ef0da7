"""Property: any sequence of begins, finishes, stray finishes, rejections and reports keeps
every counter equal to a simple model's and every snapshot consistent."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from concmon import OVERFLOW_NAME, ConcurrencyMonitor, Outcome, Ticket
from concmon.testing import check_invariants

NAMES = st.sampled_from(["/a", "/b", "/c", "/d", "/e"])


class MonitorModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.monitor = ConcurrencyMonitor(max_endpoints=3)
        self.open: list[tuple[str, Ticket]] = []
        self.closed: list[Ticket] = []
        self.model: dict[str, dict[str, int]] = {}
        self.interval_peak = 0
        self.peak = 0

    def _key(self, name: str) -> str:
        known = [k for k in self.model if k != OVERFLOW_NAME]
        if name in self.model or len(known) < 3:
            return name
        return OVERFLOW_NAME

    def _ep(self, key: str) -> dict[str, int]:
        return self.model.setdefault(
            key,
            {"active": 0, "total": 0, "completed": 0, "failed": 0, "cancelled": 0, "rejected": 0},
        )

    def _active(self) -> int:
        return sum(e["active"] for e in self.model.values())

    @rule(name=NAMES)
    def begin(self, name: str) -> None:
        key = self._key(name)
        self.open.append((key, self.monitor.begin(name)))
        ep = self._ep(key)
        ep["active"] += 1
        ep["total"] += 1
        self.interval_peak = max(self.interval_peak, self._active())
        self.peak = max(self.peak, self._active())

    @precondition(lambda self: self.open)
    @rule(index=st.integers(0, 1000), outcome=st.sampled_from(list(Outcome)))
    def finish(self, index: int, outcome: Outcome) -> None:
        key, ticket = self.open.pop(index % len(self.open))
        assert ticket.finish(outcome) is True
        self.closed.append(ticket)
        ep = self._ep(key)
        ep["active"] -= 1
        ep["completed"] += 1
        if outcome is not Outcome.OK:
            ep[outcome.value] += 1

    @precondition(lambda self: self.closed)
    @rule(index=st.integers(0, 1000), outcome=st.sampled_from(list(Outcome)))
    def finish_again(self, index: int, outcome: Outcome) -> None:
        assert self.closed[index % len(self.closed)].finish(outcome) is False

    @rule(name=NAMES)
    def stray_decrement(self, name: str) -> None:
        key = self._key(name)
        if key in self.model and self.model[key]["active"] > 0:
            return  # not stray: that would close someone else's ticket
        assert self.monitor.decrement_task(name) is False

    @rule(name=NAMES)
    def reject(self, name: str) -> None:
        self.monitor.reject(name)
        self._ep(self._key(name))["rejected"] += 1

    @rule()
    def report(self) -> None:
        snap = check_invariants(self.monitor.report_snapshot())
        assert snap.interval_peak == self.interval_peak
        self.interval_peak = self._active()

    @invariant()
    def matches_model(self) -> None:
        snap = check_invariants(self.monitor.snapshot())
        got = {
            name: {
                "active": s.active,
                "total": s.total,
                "completed": s.completed,
                "failed": s.failed,
                "cancelled": s.cancelled,
                "rejected": s.rejected,
            }
            for name, s in snap.endpoints.items()
        }
        assert got == self.model
        assert snap.active == self._active()
        assert snap.peak == self.peak
        assert snap.interval_peak == self.interval_peak


MonitorModel.TestCase.settings = settings(max_examples=150, stateful_step_count=60, deadline=None)
TestMonitorModel = MonitorModel.TestCase
