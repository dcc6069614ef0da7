"""Plugins: discovery through entry points, blocking, isolation of failing sinks."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import concmon
from concmon import get_runtime, init_monitor, shutdown_monitor
from concmon.snapshot import Snapshot
from concmon.testing import CapturingSink

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "concmon-sample-sink"


@pytest.fixture(scope="module")
def sample_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample sink package, really installed by pip into a directory of its own."""
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    # Built from a copy: an in-place build would leave build/ and egg-info in the source tree.
    source = tmp_path_factory.mktemp("src") / FIXTURE.name
    shutil.copytree(FIXTURE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
            "--no-build-isolation", "--no-index", "--target", str(target),
            "--cache-dir", str(build), str(source),
        ],
        check=True,
    )  # fmt: skip
    return target


@pytest.fixture
def with_sample(sample_site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.syspath_prepend(str(sample_site))
    monkeypatch.setenv("CONCMON_PLUGIN_AUTOLOAD", "true")
    yield sample_site
    sys.modules.pop("concmon_sample_sink", None)


def test_third_party_sink_is_discovered_and_called(
    with_sample: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An installed package's `concmon` entry point is loaded by name and gets reports."""
    out = tmp_path / "sample.txt"
    monkeypatch.setenv("SAMPLE_SINK_FILE", str(out))
    monkeypatch.setenv("CONCMON_SINKS", "sample")
    monitor = init_monitor(update_interval=60)
    runtime = get_runtime()
    assert runtime is not None and runtime.plugins.names() == ["sample"]
    assert runtime.reporter.reported_at_start.wait(10)
    monitor.begin("/x").finish()
    runtime.reporter.report_now()
    assert out.read_text() == "0\n1\n"  # the report at start, then this one
    assert runtime.plugins.load_configured() == ["sample"], "loading twice adds nothing"


def test_broken_entry_point_is_named_and_skipped(
    with_sample: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RELIABILITY 24: an entry point that fails to import is named in a warning and skipped."""
    monkeypatch.setenv("CONCMON_SINKS", "broken,stdout")
    with caplog.at_level(logging.WARNING, logger="concmon"):
        init_monitor()
    runtime = get_runtime()
    assert runtime is not None and runtime.plugins.names() == ["stdout"]
    assert any(
        "'broken'" in r.message and "ModuleNotFoundError" in r.message for r in caplog.records
    )


def test_blocked_plugin_is_never_imported(
    with_sample: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """RELIABILITY 24: a blocked plugin is not imported, not even to look at it."""
    monkeypatch.setenv("CONCMON_SINKS", "sample")
    monkeypatch.setenv("CONCMON_BLOCKED_PLUGINS", "sample")
    sys.modules.pop("concmon_sample_sink", None)
    with caplog.at_level(logging.WARNING, logger="concmon"):
        init_monitor()
    assert "concmon_sample_sink" not in sys.modules
    runtime = get_runtime()
    assert runtime is not None and runtime.plugins.names() == []
    assert any("blocked" in r.message for r in caplog.records)


def test_unknown_sink_is_reported_and_counting_goes_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A typo in CONCMON_SINKS names the sink and the available ones; counting continues."""
    monkeypatch.setenv("CONCMON_SINKS", "jsnol")
    with caplog.at_level(logging.ERROR, logger="concmon"):
        monitor = init_monitor()
    message = " ".join(r.message for r in caplog.records)
    assert "unknown sink 'jsnol'" in message and "jsonl" in message
    monitor.begin("/x").finish()
    assert monitor.snapshot().total == 1


class Exploding:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
        self.calls = 0

    @concmon.hookimpl
    def concmon_report(self, snapshot: Snapshot) -> None:
        self.calls += 1
        raise self.exc


@pytest.mark.parametrize("exc", [RuntimeError("sink down"), SystemExit(3)])
def test_failing_sink_is_isolated(caplog: pytest.LogCaptureFixture, exc: BaseException) -> None:
    """RELIABILITY 23: a sink raising every time (even SystemExit) cannot stop the others."""
    init_monitor(sinks=(), update_interval=0.05, system_metrics=False)
    runtime = get_runtime()
    assert runtime is not None
    bad = Exploding(exc)
    runtime.plugins.register(bad, "bad")
    good = CapturingSink()
    runtime.plugins.register(good, "good")
    with caplog.at_level(logging.ERROR, logger="concmon"):
        reports = good.wait_for(8)
    assert runtime.reporter.running
    assert bad.calls >= 7
    failures = [r for r in caplog.records if "plugin 'bad' failed" in r.message]
    assert len(failures) == 1, "failures are logged with a rate limit"
    assert reports[-1].sink_errors["bad"] >= 6
    final = shutdown_monitor()
    assert final is not None and final.sink_errors["bad"] >= bad.calls - 1


def test_sink_touching_the_monitor_cannot_deadlock() -> None:
    """RELIABILITY 25: a sink that reads and counts from inside a report finishes promptly."""
    monitor = init_monitor(sinks=(), update_interval=0.05, system_metrics=False)
    runtime = get_runtime()
    assert runtime is not None
    seen = threading.Event()

    class Nosy:
        @concmon.hookimpl
        def concmon_report(self, snapshot: Snapshot) -> None:
            monitor.snapshot()
            with monitor.track("/from-sink"):
                monitor.report_snapshot()
            seen.set()

    runtime.plugins.register(Nosy(), "nosy")
    assert seen.wait(5)
    assert shutdown_monitor(timeout=5) is not None


def test_configure_receives_settings_and_monitor() -> None:
    """concmon_configure gets the validated settings and the live monitor."""
    monitor = init_monitor(sinks=(), update_interval=7.5)
    runtime = get_runtime()
    assert runtime is not None
    got: dict[str, object] = {}

    class Configured:
        @concmon.hookimpl
        def concmon_configure(self, settings: concmon.Settings, monitor: object) -> None:
            got["interval"] = settings.update_interval
            got["monitor"] = monitor

    assert runtime.plugins.register(Configured(), "configured")
    assert got == {"interval": 7.5, "monitor": monitor}
    assert not runtime.plugins.register(Configured(), "configured"), "no double registration"


def test_failing_configure_disables_only_that_plugin(caplog: pytest.LogCaptureFixture) -> None:
    """A plugin whose configure raises is unregistered with a logged error."""
    init_monitor(sinks=())
    runtime = get_runtime()
    assert runtime is not None

    class Broken:
        @concmon.hookimpl
        def concmon_configure(self) -> None:
            raise OSError("no such device")

    with caplog.at_level(logging.ERROR, logger="concmon"):
        assert not runtime.plugins.register(Broken(), "broken")
    assert "broken" not in runtime.plugins.names()
    assert any("no such device" in r.message for r in caplog.records)


def test_misspelled_hook_is_refused_with_its_name(caplog: pytest.LogCaptureFixture) -> None:
    """A hook concmon does not define (concmon_reprot) is one error naming it; others load."""
    init_monitor(sinks=())
    runtime = get_runtime()
    assert runtime is not None
    assert runtime.reporter.reported_at_start.wait(10)

    class Typo:
        @concmon.hookimpl
        def concmon_reprot(self, snapshot: Snapshot) -> None:
            raise AssertionError("never called")

    with caplog.at_level(logging.ERROR, logger="concmon"):
        assert not runtime.plugins.register(Typo(), "typo")
    assert "typo" not in runtime.plugins.names()
    errors = [r.message for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "concmon_reprot" in errors[0] and "concmon_report" in errors[0]
    good = CapturingSink()
    assert runtime.plugins.register(good, "good")
    runtime.reporter.report_now()
    assert len(good.reports) == 1


def test_hook_wrapper_is_refused_with_a_clear_message(caplog: pytest.LogCaptureFixture) -> None:
    """A wrapper could swallow or reorder the other sinks' calls: it is refused by name."""
    init_monitor(sinks=())
    runtime = get_runtime()
    assert runtime is not None

    class Wrapping:
        @concmon.hookimpl(wrapper=True)
        def concmon_report(self, snapshot: Snapshot) -> object:
            return (yield)

    with caplog.at_level(logging.ERROR, logger="concmon"):
        assert not runtime.plugins.register(Wrapping(), "wrapping")
    assert "wrapping" not in runtime.plugins.names()
    assert any("hook wrapper" in r.message for r in caplog.records)


def test_hooks_are_called_through_pluggy_in_isolation() -> None:
    """pm.hook.concmon_report reaches every sink even when the first one called raises."""
    # No reporter: its report at start could reach the sink registered below at any moment.
    init_monitor(sinks=(), start_reporter=False)
    runtime = get_runtime()
    assert runtime is not None
    good = CapturingSink()
    assert runtime.plugins.register(good, "good")
    assert runtime.plugins.register(Exploding(RuntimeError("down")), "bad")  # called first
    snapshot = runtime.monitor.snapshot()
    runtime.plugins.pm.hook.concmon_report(snapshot=snapshot)
    assert good.reports == [snapshot]
    assert runtime.monitor.snapshot().sink_errors == {"bad": 1}
    assert runtime.plugins.get("good") is good


def test_a_failing_plugin_scan_still_leaves_a_reporting_runtime(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The entry-point scan raising (broken package metadata) costs the plugins, not the
    reports: one error line, and the reporter runs and reports."""

    def broken(**_: object) -> None:
        raise OSError("metadata unreadable")

    monkeypatch.setattr("concmon.plugins.entry_points", broken)
    monkeypatch.setenv("CONCMON_PLUGIN_AUTOLOAD", "true")
    monkeypatch.setenv("CONCMON_SINKS", "stdout")
    with caplog.at_level(logging.ERROR, logger="concmon"):
        init_monitor(update_interval=0.05, system_metrics=False)
    runtime = get_runtime()
    assert runtime is not None and runtime.reporter.running
    assert any("metadata unreadable" in r.getMessage() for r in caplog.records)
    sink = CapturingSink()
    assert runtime.plugins.register(sink, "capture")
    assert len(sink.wait_for(2)) >= 2


def test_every_hook_is_documented_and_tested() -> None:
    """Each hookspec has a docstring contract and is exercised by this test module."""
    from concmon import hookspecs

    source = "".join(p.read_text() for p in Path(__file__).parent.glob("test_*.py"))
    hooks = [name for name in dir(hookspecs) if name.startswith("concmon_")]
    assert sorted(hooks) == ["concmon_configure", "concmon_report", "concmon_shutdown"]
    docs = (Path(__file__).resolve().parents[2] / "docs" / "plugins.md").read_text()
    for name in hooks:
        assert (getattr(hookspecs, name).__doc__ or "").strip(), name
        assert f"`{name}" in docs, f"{name} is missing from docs/plugins.md"
        used = name in source or (name == "concmon_shutdown" and "sink.final" in source)
        assert used, f"no test exercises {name}"
