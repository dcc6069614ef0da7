"""Every benchmark turns a count or a duration that cannot work into one line naming the option.

A zero number of rounds used to run to the end and die in ``statistics.median`` with a
traceback; argparse now refuses it before anything starts.
"""

from __future__ import annotations

import pytest

from tests.bench import run_bench

CASES = [
    ("asgi.py", "--rounds", "0"),
    ("asgi.py", "--duration", "-1"),
    ("wsgi.py", "--rounds", "0"),
    ("wsgi.py", "--seconds", "soon"),
    ("simultaneous.py", "--replicas", "0"),
    ("instructions.py", "--extra", "-5"),
    ("bytecodes.py", "--requests", "0"),
    ("peers.py", "--batch", "0"),
    ("core.py", "--pairs", "0"),
    ("exporters.py", "--workers", "0"),
    ("cli_show.py", "--mb", "x"),
]


@pytest.mark.parametrize(("script", "option", "value"), CASES)
def test_bad_count_is_one_line(script: str, option: str, value: str) -> None:
    done = run_bench(script, option, value)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert f"argument {option}: must be" in last, last


def test_variant_selection_names_what_is_unknown() -> None:
    """instructions.py and bytecodes.py share one reading of --frameworks and --peers."""
    from bench.peers import selected

    assert [(fw.name, v) for fw, v in selected("fastapi", "none")] == [
        ("fastapi", ["bare", "concmon"])
    ]
    chosen = selected("fastapi,flask", "instrumentator,opentelemetry")
    assert [v for _, v in chosen] == [
        ["bare", "concmon", "instrumentator", "opentelemetry"],
        ["bare", "concmon", "opentelemetry"],
    ]
    assert len(selected("flask", "all")[0][1]) == 4
    with pytest.raises(ValueError, match="unknown framework 'falsk'"):
        selected("falsk", "all")
    with pytest.raises(ValueError, match="unknown peer instrumentor; choose from"):
        selected("fastapi", "instrumentor")
