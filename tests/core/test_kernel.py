"""The two counting kernels: the C one (concmon/_counting.c) counts exactly as the Python one
(concmon/_kernel.py), its reference, after any sequence of operations; and the monitor runs
on either."""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import sys
import sysconfig
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from concmon import _kernel
from concmon.monitor import KERNEL, Outcome

ROOT = Path(__file__).resolve().parents[2]

try:
    from concmon import _counting
except ImportError:
    _counting = None  # type: ignore[assignment]

needs_c = pytest.mark.skipif(_counting is None, reason="the C kernel was not built here")


@pytest.fixture(params=["c", "python"])
def kernel(request: pytest.FixtureRequest) -> ModuleType:
    """Each kernel in turn (the C one skipped where it was not built)."""
    if request.param == "python":
        return _kernel
    if _counting is None:
        pytest.skip("the C kernel was not built here")
    return _counting


NAMES = st.sampled_from(["/a", "/b", "/c"])
INTS = slice(0, 8)  # the figures that are counts (the rest are clock-dependent floats)


def _group_class(kernel: ModuleType) -> type[Any]:
    """The smallest group a kernel needs around it: a lock and the name bookkeeping."""
    kernel.setup(Outcome.OK, Outcome.FAILED)

    class Group(kernel.GroupBase):  # type: ignore[misc,name-defined]
        __slots__ = ("_lock",)

        def __init__(self) -> None:
            kernel.GroupBase.__init__(self)
            self._lock = threading.Lock()

        def _add_locked(self, name: str) -> Any:
            with self._lock:
                return self.endpoints.get(name) or self._add(name)

        def _add(self, name: str) -> Any:
            counters = kernel.Counters(self)
            self.endpoints[name] = counters
            return counters

        def _lookup(self, name: str) -> Any:
            return self.endpoints.get(name)

    return Group


def _take(group: Any, reset: bool) -> tuple[Any, ...]:
    with group._lock:
        active, peak, interval_peak, taken = group._take(1000.0, 10.0, reset)
    return active, peak, interval_peak, sorted((n, f[INTS]) for n, f in taken)


@needs_c
class KernelsAgree(RuleBasedStateMachine):
    """Every operation applied to a C group and a Python group; their figures never differ."""

    def __init__(self) -> None:
        super().__init__()
        self.kernels = [_counting, _kernel]
        self.groups = [_group_class(k)() for k in self.kernels]
        self.orphans = [_group_class(k)() for k in self.kernels]
        self.open: list[list[Any]] = []  # one ticket per kernel
        self.closed: list[list[Any]] = []
        self.increments: dict[str, int] = {}  # by name, not yet decremented

    @rule(name=NAMES)
    def admit(self, name: str) -> None:
        pair = []
        for kernel, group in zip(self.kernels, self.groups, strict=True):
            ticket = object.__new__(kernel.Ticket)
            group.admit(ticket, name)
            assert ticket.open
            pair.append(ticket)
        self.open.append(pair)

    @precondition(lambda self: self.open)
    @rule(index=st.integers(0, 100), outcome=st.sampled_from(list(Outcome)))
    def finish(self, index: int, outcome: Outcome) -> None:
        pair = self.open.pop(index % len(self.open))
        assert [t.finish(outcome) for t in pair] == [True, True]
        assert not any(t.open for t in pair)
        self.closed.append(pair)

    @precondition(lambda self: self.closed)
    @rule(index=st.integers(0, 100))
    def finish_again(self, index: int) -> None:
        assert [t.finish() for t in self.closed[index % len(self.closed)]] == [False, False]

    @rule(name=NAMES)
    def increment(self, name: str) -> None:
        for group in self.groups:
            group.increment(name)
        self.increments[name] = self.increments.get(name, 0) + 1

    @rule(name=NAMES, outcome=st.sampled_from(list(Outcome)))
    def decrement(self, name: str, outcome: Outcome) -> None:
        # Paired by name with an increment, or stray (nothing active there). Closing a ticket's
        # count by name is the caller's bug and not exercised.
        pending = self.increments.get(name, 0)
        stray = not pending and self.groups[1].endpoints.get(name) is None
        if not pending and not stray:
            return
        results = [group._decrement(name, outcome) for group in self.groups]
        assert results == [bool(pending)] * 2
        if pending:
            self.increments[name] = pending - 1

    @rule(name=NAMES)
    def reject(self, name: str) -> None:
        for group in self.groups:
            with group._lock:
                (group.endpoints.get(name) or group._add(name)).reject()

    @rule(reset=st.booleans())
    def take(self, reset: bool) -> None:
        c, py = (_take(group, reset) for group in self.groups)
        assert c == py

    @rule()
    def orphan_all(self) -> None:
        for group, orphans in zip(self.groups, self.orphans, strict=True):
            with group._lock:
                group._orphan_all(orphans)
            assert group.endpoints == {} and group.active == 0
        self.increments = {}  # their counters are the orphanage's now

    @invariant()
    def agree(self) -> None:
        c, py = (_take(group, False) for group in self.groups)
        assert c == py
        assert [g.active for g in self.orphans] == [self.orphans[1].active] * 2
        assert all(g.active >= 0 for g in (*self.groups, *self.orphans))


KernelsAgree.TestCase.settings = settings(max_examples=150, stateful_step_count=50, deadline=None)
TestKernelsAgree = KernelsAgree.TestCase


@needs_c
def test_durations_and_mean_are_the_clocks() -> None:
    """The C kernel reads the same clock as time.perf_counter, so durations and the
    time-weighted mean come out as the Python kernel's for the same timings."""
    from time import perf_counter

    group = _group_class(_counting)()
    ticket = object.__new__(_counting.Ticket)
    before = perf_counter()
    group.admit(ticket, "/x")
    after_admit = perf_counter()
    assert before <= ticket.started <= after_admit
    assert before <= _counting.now() <= perf_counter()
    ticket.finish()
    ended = perf_counter()
    with group._lock:
        _, _, _, taken = group._take(ended, ended - before, False)
    figures = dict(taken)["/x"]
    count, dur_sum, dur_max, area = figures[7], figures[8], figures[9], figures[10]
    assert count == 1
    assert 0 <= dur_sum == dur_max <= ended - before
    assert area == pytest.approx(dur_sum, abs=1e-9)  # one request active for its duration


@needs_c
def test_c_objects_are_freed_and_hold_no_extra_references() -> None:
    """Reference counts come back after requests, finishes, a reset and collection: nothing
    leaks per request, and a reset hands every reference to the orphanage and back."""
    group = _group_class(_counting)()
    orphans = _group_class(_counting)()
    base, orphan_base = sys.getrefcount(group), sys.getrefcount(orphans)
    for i in range(1000):
        ticket = object.__new__(_counting.Ticket)
        group.admit(ticket, f"/{i % 3}")
        ticket.finish(Outcome.FAILED if i % 2 else Outcome.OK)
    del ticket
    assert sys.getrefcount(group) == base + 3  # one per endpoint's counters
    held = object.__new__(_counting.Ticket)
    group.admit(held, "/0")
    with group._lock:
        group._orphan_all(orphans)
    assert sys.getrefcount(group) == base
    assert sys.getrefcount(orphans) == orphan_base + 1  # the counters the open ticket holds
    assert orphans.active == 1
    assert held.finish() is True
    assert orphans.active == 0
    del held
    gc.collect()
    assert sys.getrefcount(orphans) == orphan_base


def test_finish_takes_its_outcome_by_position_or_name(kernel: ModuleType) -> None:
    group = _group_class(kernel)()
    for call in (lambda t: t.finish(Outcome.FAILED), lambda t: t.finish(outcome=Outcome.FAILED)):
        ticket = object.__new__(kernel.Ticket)
        group.admit(ticket, "/x")
        assert call(ticket) is True
    with group._lock:
        _, _, _, taken = group._take(1000.0, 10.0, False)
    assert dict(taken)["/x"][3:6] == (2, 2, 0)  # completed, failed, cancelled
    with pytest.raises(TypeError):
        object.__new__(kernel.Ticket).finish(result=Outcome.OK)


@needs_c
def test_bad_arguments_are_type_errors() -> None:
    group = _group_class(_counting)()
    with pytest.raises(TypeError, match="Ticket"):
        group.admit(object(), "/x")
    with pytest.raises(TypeError):
        group.admit()
    ticket = object.__new__(_counting.Ticket)
    with pytest.raises(TypeError, match="Counters"):
        ticket._counters = "not counters"
    with pytest.raises(TypeError):
        ticket.finish(Outcome.OK, Outcome.OK)
    with pytest.raises(TypeError):
        _counting.Counters("not a group")
    assert group.active == 0 and group.endpoints == {}
    group.endpoints["/junk"] = "not counters"  # only the kernel's objects belong there
    with pytest.raises(TypeError, match="Counters"):
        group.admit(object.__new__(_counting.Ticket), "/junk")
    with pytest.raises(TypeError, match="Counters"), group._lock:
        group._take(1.0, 1.0, True)


def test_the_c_kernel_is_built_where_a_compiler_is() -> None:
    """pip builds the C kernel whenever it can; a silent fall back to the Python one (a broken
    build step) would leave the fast path untested and unused."""
    if os.environ.get("CONCMON_PURE_PYTHON", "") not in ("", "0"):
        pytest.skip("the Python kernel was asked for")
    compiler = (sysconfig.get_config_var("CC") or "").split()[:1]
    if (
        not compiler
        or shutil.which(compiler[0]) is None
        or sysconfig.get_config_var("Py_GIL_DISABLED")
    ):
        pytest.skip("no C compiler (or no GIL): the Python kernel is the one to use")
    assert KERNEL == "c"


@pytest.mark.skipif(KERNEL != "c", reason="the Python kernel is the one loaded already")
def test_monitor_tests_pass_on_the_python_kernel() -> None:
    """The monitor's own tests (threads, reports, resets, the model) on the Python kernel,
    which a build without a compiler, or a free-threaded interpreter, runs."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/core/test_monitor.py", "tests/core/test_monitor_model.py"],
        cwd=ROOT,
        env=dict(os.environ, CONCMON_PURE_PYTHON="1"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" in done.stdout


def test_a_finish_run_by_the_collector_finds_its_counters(kernel: ModuleType) -> None:
    """A whole monitor dropped with a request still open, the request's ticket in a reference
    cycle whose finalizer finishes it (as the WSGI exchange's ``__del__`` does): the collector
    runs the finish before it tears anything down, so it counts, and nothing crashes."""
    finished: list[bool] = []

    class Held(kernel.Ticket):  # type: ignore[misc,name-defined]
        __slots__ = ("cycle",)

        def __del__(self) -> None:
            finished.append(self.finish(Outcome.CANCELLED))

    group = _group_class(kernel)()
    ticket = object.__new__(Held)
    group.admit(ticket, "/x")
    ticket.cycle = (ticket, group)
    del ticket, group
    gc.collect()
    assert finished == [True]
