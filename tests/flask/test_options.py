"""Options from keywords and app.config, their checks, and switching the monitor off."""

from __future__ import annotations

import gc
import logging
import weakref

import pytest
from flask import Flask

from concmon import ConfigError, get_monitor, get_runtime, shutdown_monitor
from concmon.testing import check_balanced
from concmon_flask import EXTENSION_KEY, ConcMon, ConcMonWSGIMiddleware, FlaskMiddleware
from tests.flask.apps import build_app
from tests.flask.wsgi_driver import serve


def test_config_keys_are_read_and_keywords_win() -> None:
    """CONCMON_* config keys configure the adapter and the core; keywords override them."""
    app = Flask("configured")
    app.config.update(
        CONCMON_JSON_PATH="/stats",
        CONCMON_EXCLUDE_PATHS="/health, /ready",
        CONCMON_FAILED_STATUS="400",
        CONCMON_UPDATE_INTERVAL=0.5,
        CONCMON_SINKS=(),
    )
    ConcMon(app, json_path="/live")
    middleware = app.extensions[EXTENSION_KEY]
    assert isinstance(middleware, FlaskMiddleware)
    assert middleware.options.json_path == "/live"
    assert middleware.options.excluded == {"/health", "/ready"}
    assert middleware.options.failed_status(404)
    runtime = get_runtime()
    assert runtime is not None
    assert runtime.settings.update_interval == 0.5


def test_environment_still_configures_the_core(monkeypatch: pytest.MonkeyPatch) -> None:
    """MONITOR_UPDATE_INTERVAL from the environment applies when code sets nothing."""
    monkeypatch.setenv("MONITOR_UPDATE_INTERVAL", "0.25")
    ConcMon(Flask("env"), sinks=())
    runtime = get_runtime()
    assert runtime is not None
    assert runtime.settings.update_interval == 0.25


@pytest.mark.parametrize(
    ("options", "names"),
    [
        ({"failed_status": 999}, "failed_status=999"),
        ({"failed_status": "often"}, "failed_status='often'"),
        ({"json_path": "stats"}, "json_path='stats'"),
        ({"exclude_paths": ["health"]}, "exclude_paths="),
        ({"metrics_allow": "not-an-address"}, "metrics_allow='not-an-address'"),
        ({"metrics_token": " "}, "metrics_token='***'"),
        ({"prometheus": "maybe"}, "prometheus='maybe'"),
        ({"jsn_path": "/x"}, "unknown option 'jsn_path'"),
    ],
)
def test_bad_options_fail_with_one_clear_line(options: dict[str, object], names: str) -> None:
    """Every bad option value is a one-line ConfigError naming it, never a traceback dump."""
    with pytest.raises(ConfigError) as caught:
        ConcMon(Flask("bad"), **options)
    message = str(caught.value)
    assert names in message
    assert "\n" not in message


def test_bad_core_setting_switches_counting_off_or_fails_when_strict(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A core setting concmon cannot use leaves the app as it is, with one error line naming it;
    under CONCMON_STRICT=1 it is a one-line ConfigError instead."""
    app = Flask("bad-core")
    with caplog.at_level(logging.ERROR, logger="concmon"):
        ConcMon(app, update_interval=-1)
    assert EXTENSION_KEY not in app.extensions, "switched off: the app is left untouched"
    assert ["MONITOR_UPDATE_INTERVAL=-1" in r.getMessage() for r in caplog.records] == [True]
    shutdown_monitor()
    monkeypatch.setenv("CONCMON_STRICT", "1")
    with pytest.raises(ConfigError, match="MONITOR_UPDATE_INTERVAL=-1") as caught:
        ConcMon(Flask("strict"), update_interval=-1)
    assert "\n" not in str(caught.value)


def test_unknown_config_key_is_named() -> None:
    """A misspelt CONCMON_ config key is reported by its exact name at init_app."""
    app = Flask("typo")
    app.config["CONCMON_JSONPATH"] = "/x"
    with pytest.raises(ConfigError, match="'CONCMON_JSONPATH'"):
        ConcMon().init_app(app)


def test_secret_token_never_appears_in_errors() -> None:
    """A rejected metrics token is masked in the error message."""
    with pytest.raises(ConfigError) as caught:
        ConcMon(Flask("secret"), metrics_token=" hunter2 ")
    assert "hunter2" not in str(caught.value)


def test_disabled_monitor_leaves_the_app_untouched(monkeypatch: pytest.MonkeyPatch) -> None:
    """ENABLE_CONCURRENCY_MONITOR=false: no wrapping, no counting, the app still works."""
    monkeypatch.setenv("ENABLE_CONCURRENCY_MONITOR", "false")
    app, _ = build_app()
    original = app.wsgi_app
    ConcMon(app)
    assert app.wsgi_app == original
    assert EXTENSION_KEY not in app.extensions
    assert serve(app, "/").chunks == [b"ok"]
    assert get_monitor().snapshot().total == 0


def test_plain_middleware_counts_a_non_flask_app() -> None:
    """ConcMonWSGIMiddleware works on any WSGI callable, with an endpoint function."""

    def plain(environ: dict[str, object], start_response: object) -> list[bytes]:
        status = "500 Internal Server Error" if environ["PATH_INFO"] == "/err" else "200 OK"
        start_response(status, [("Content-Type", "text/plain")])  # type: ignore[operator]
        return [b"plain"]

    app = ConcMonWSGIMiddleware(plain, endpoint=lambda environ: "plain", exclude_paths="/skip")
    for path in ("/a", "/err", "/skip"):
        serve(app, path)
    stats = check_balanced(get_monitor().snapshot()).endpoints["plain"]
    assert (stats.total, stats.failed) == (2, 1)


def test_a_flask_app_with_concmon_is_freed_at_zero_references() -> None:
    """ConcMon(app) adds no reference cycle: the app goes the moment its last reference does,
    with the garbage collector off (Flask guards the same for itself)."""
    app = Flask("freed")

    @app.get("/")
    def index() -> str:
        return "ok"

    ConcMon(app)
    assert app.test_client().get("/").status_code == 200
    ref = weakref.ref(app)
    gc.collect()
    gc.disable()
    try:
        del app
        assert ref() is None
    finally:
        gc.enable()
