"""The adapters' options model: one declaration per shared option, one rule, one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from concmon import ConfigError
from concmon.adapter_options import AdapterOptions, FailedStatus, options_table
from concmon_django.options import Options as DjangoOptions
from concmon_fastapi.options import Options as FastAPIOptions
from concmon_flask.options import Options as FlaskOptions

ADAPTERS = [FastAPIOptions, FlaskOptions, DjangoOptions]
DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_shared_options_are_declared_only_in_the_shared_model() -> None:
    """Both adapters take every shared option, and neither declares one of its own again."""
    shared = set(AdapterOptions.model_fields)
    for model in ADAPTERS:
        assert shared <= set(model.model_fields)
        assert not shared & set(model.__annotations__), model
        for name in shared:
            assert repr(model.model_fields[name]) == repr(AdapterOptions.model_fields[name])


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"exclude_paths": "/health, /static/*"}, {"exclude_paths": ("/health", "/static/*")}),
        ({"exclude_paths": ["/a", " /b "]}, {"exclude_paths": ("/a", "/b")}),
        ({"exclude_paths": None}, {"exclude_paths": ()}),
        ({"json_path": True}, {"json_path": "/concurrency"}),
        ({"json_path": False}, {"json_path": None}),
        ({"json_path": ""}, {"json_path": None}),
        ({"prometheus": "yes"}, {"prometheus": True}),
        ({"prometheus": "off"}, {"prometheus": False}),
        ({"metrics_path": None}, {"metrics_path": None}),
        ({"metrics_allow": "127.0.0.1, ::1"}, {"metrics_allow": ("127.0.0.1/32", "::1/128")}),
        ({"metrics_allow": ["10.0.0.1/8"]}, {"metrics_allow": ("10.0.0.0/8",)}),
        ({"failed_status": "400"}, {"failed_status": FailedStatus(400)}),
        ({"failed_status": 600}, {"failed_status": FailedStatus(600)}),
        ({"failed_status": None}, {"failed_status": FailedStatus(None)}),
        ({"failed_status": False}, {"failed_status": FailedStatus(None)}),
    ],
)
def test_shared_option_values_mean_the_same_in_both_adapters(
    values: dict[str, Any], expected: dict[str, Any]
) -> None:
    """A shared option given the same value is read the same way by both adapters."""
    for model in ADAPTERS:
        parsed = model.parse(values)
        for name, value in expected.items():
            got = getattr(parsed, name)
            if name == "metrics_allow":
                got = tuple(str(network) for network in got)
            assert got == value, (model.adapter, name)


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"exclude_paths": ["health"]}, "exclude_paths=['health'] is not valid: expected paths"),
        ({"exclude_paths": 5}, "exclude_paths=5 is not valid"),
        ({"exclude_paths": {"/a": 1}}, "exclude_paths={'/a': 1} is not valid"),
        ({"failed_status": 99}, "failed_status=99 is not valid: expected a status code"),
        ({"failed_status": True}, "failed_status=True is not valid"),
        ({"failed_status": "often"}, "failed_status='often' is not valid"),
        ({"json_path": "stats"}, "json_path='stats' is not valid: expected a path"),
        ({"json_path": "/stats "}, "json_path='/stats ' is not valid"),
        ({"prometheus": "maybe"}, "prometheus='maybe' is not valid: expected true or false"),
        ({"prometheus": 1}, "prometheus=1 is not valid"),
        ({"metrics_path": "metrics"}, "metrics_path='metrics' is not valid"),
        ({"metrics_token": ""}, "metrics_token='***' is not valid"),
        ({"metrics_allow": []}, "metrics_allow=[] is not valid: expected client addresses"),
        ({"metrics_allow": "10.0.0.0/8, nope"}, "metrics_allow='10.0.0.0/8, nope' is not valid"),
        ({"prometheus": True, "json_path": "/metrics"}, "json_path and metrics_path are both"),
        ({"jsonpath": "/x"}, "unknown option 'jsonpath'; expected one of "),
    ],
)
def test_bad_shared_values_fail_alike_in_one_line(values: dict[str, Any], fragment: str) -> None:
    """A bad shared option is the same one-line ConfigError in both adapters, but the prefix."""
    messages = []
    for model in ADAPTERS:
        with pytest.raises(ConfigError) as caught:
            model.parse(values)
        message = str(caught.value)
        assert message.startswith(f"{model.adapter}: ")
        assert fragment in message
        assert "\n" not in message
        assert caught.value.__cause__ is None and caught.value.__suppress_context__
        messages.append(message.split(": ", 1)[1].partition("; expected one of")[0])
    assert messages[0] == messages[1]


def test_several_bad_options_are_named_on_one_line() -> None:
    """Two bad options give one message naming both; a secret value is never shown."""
    with pytest.raises(ConfigError) as caught:
        FastAPIOptions.parse({"json_path": "x", "metrics_token": " hunter2 "})
    message = str(caught.value)
    assert "json_path='x'" in message and "metrics_token='***'" in message
    assert "hunter2" not in message and "\n" not in message


def test_failed_status_rule_forms() -> None:
    """A threshold counts it and above, a function decides alone, None fails nothing."""
    assert FailedStatus(400)(404) and not FailedStatus(400)(399)
    assert FailedStatus(None, lambda code: code == 418)(418)
    assert not FailedStatus(None, lambda code: code == 418)(500)
    assert not FailedStatus(None)(599)


def test_adapter_only_options_stay_with_their_adapter() -> None:
    """The gate's options are FastAPI's, the reporter switch Flask's: each refuses the other's."""
    with pytest.raises(ConfigError, match="unknown option 'start_reporter'"):
        FastAPIOptions.parse({"start_reporter": False})
    with pytest.raises(ConfigError, match="unknown option 'max_concurrency'"):
        FlaskOptions.parse({"max_concurrency": 3})
    assert FlaskOptions.parse({"update_interval": 1.0}).start_reporter is True


def test_gate_defaults_follow_the_queue_timeout() -> None:
    """retry_after defaults to the queue timeout rounded up, else 1."""
    assert FastAPIOptions.parse({}).retry_seconds == 1
    assert FastAPIOptions.parse({"max_concurrency": 1, "queue_timeout": 2.5}).retry_seconds == 3
    assert FastAPIOptions.parse({"max_concurrency": 1, "retry_after": 0}).retry_seconds == 0


def test_options_table_lists_every_option_once() -> None:
    """The generated table has one row per option, with what it accepts."""
    for model in ADAPTERS:
        rows = options_table(model).splitlines()[2:]
        assert [row.split("|")[1].strip().strip("`") for row in rows] == list(model.model_fields)
        assert all(row.count("|") == 5 for row in rows)


@pytest.mark.parametrize(
    ("model", "page"),
    [(FastAPIOptions, "fastapi.md"), (FlaskOptions, "flask.md"), (DjangoOptions, "django.md")],
)
def test_each_adapter_page_carries_its_generated_table(
    model: type[AdapterOptions], page: str
) -> None:
    """Each adapter's docs page holds options_table() of its model, unchanged."""
    table = options_table(model)
    assert table in (DOCS / page).read_text(), table
