"""The Python snippets of README.md and docs/ that are marked runnable run as shown.

A snippet is marked by an HTML comment ``<!-- runnable -->`` on the line just before its
```` ```python ```` fence. Each runs in a fresh interpreter in a temporary directory (so the
files a reporter writes land there), with concmon's variables cleared and plugin discovery off,
and must exit 0 within a bound. A ``print(...)  # text`` line states what it prints: the
printed lines must be those texts, in order. Marked snippets start no server; the ones that
try an app drive it in-process (Starlette's TestClient, werkzeug's test client).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- runnable -->"
TIMEOUT = 120.0  # a bound for a loaded machine, not an expectation

_EXPECTED = re.compile(r"^print\(.*\)\s+# (?P<text>.+)$")


@dataclass(frozen=True)
class Snippet:
    """One marked block: where it is, and its code."""

    page: str
    line: int
    code: str

    @property
    def expected(self) -> list[str]:
        """The texts its ``print(...)  # text`` lines promise, in order."""
        found = (_EXPECTED.match(line.strip()) for line in self.code.splitlines())
        return [m.group("text") for m in found if m is not None]


def pages() -> list[Path]:
    """README.md and every page of docs/."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def marked_snippets(page: Path) -> list[Snippet]:
    """The runnable-marked ```` ```python ```` blocks of ``page``."""
    lines = page.read_text().splitlines()
    found: list[Snippet] = []
    for i, line in enumerate(lines):
        if line.strip() != MARKER:
            continue
        fence = i + 1
        assert fence < len(lines) and lines[fence].strip() == "```python", (
            f"{page.name}:{i + 1}: {MARKER} must be followed by a ```python fence"
        )
        end = next(j for j in range(fence + 1, len(lines)) if lines[j].strip() == "```")
        name = str(page.relative_to(ROOT))
        found.append(Snippet(name, fence + 1, "\n".join(lines[fence + 1 : end]) + "\n"))
    return found


SNIPPETS = [s for page in pages() for s in marked_snippets(page)]


def _environment() -> dict[str, str]:
    ours = ("ENABLE_CONCURRENCY_MONITOR", "MONITOR_UPDATE_INTERVAL", "DEBUG", "LOG_LEVEL")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONCMON_") and k not in ours}
    env["CONCMON_PLUGIN_AUTOLOAD"] = "false"
    env["PYTHONPATH"] = str(ROOT)
    return env


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[f"{s.page}:{s.line}" for s in SNIPPETS])
def test_marked_snippet_runs_as_shown(snippet: Snippet, tmp_path: Path) -> None:
    """The snippet exits 0 in a fresh interpreter and prints what its comments say."""
    script = tmp_path / "snippet.py"
    script.write_text(snippet.code)
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    where = f"{snippet.page}:{snippet.line}"
    assert proc.returncode == 0, f"{where} failed:\n{proc.stdout}{proc.stderr}"
    printed = [line for line in proc.stdout.splitlines() if line.strip()]
    assert printed[: len(snippet.expected)] == snippet.expected, where


@pytest.mark.parametrize(
    ("page", "needle"),
    [
        ("docs/flask.md", "ConcMonWSGIMiddleware("),
        ("README.md", "install(app"),
        ("docs/fastapi.md", "install(app"),
        ("docs/plugins.md", "CapturingSink()"),
    ],
)
def test_the_snippets_readers_copy_first_are_marked(page: str, needle: str) -> None:
    """The any-WSGI, FastAPI install and plugin-testing snippets are among the runnable ones."""
    assert any(s.page == page and needle in s.code for s in SNIPPETS), (page, needle)


def test_a_marker_without_a_python_fence_is_reported(tmp_path: Path) -> None:
    """A marker not followed by a python fence fails collection with the page and line."""
    page = tmp_path / "page.md"
    page.write_text(f"text\n{MARKER}\n```bash\nls\n```\n")
    with pytest.raises(AssertionError, match=r"page\.md:2"):
        marked_snippets(page)
