"""The machine endpoints every adapter serves: the live snapshot as JSON and the Prometheus page.

The adapters answer these paths themselves, before counting, and must answer them alike: GET
and HEAD only, then the client address against ``metrics_allow`` (a request carrying a
forwarding header is refused unless ``metrics_allow_forwarded`` trusts the proxy: the address a
server hands over may already be the one such a header claims), then the bearer token against
``metrics_token``, then the body. All of that is decided here, with no web framework imported,
and comes back as one :class:`Answer`; an adapter only turns it into its protocol's messages,
so the ASGI and the WSGI adapter cannot disagree on who gets in or what they are told.
"""

from __future__ import annotations

import hmac
import importlib
import ipaddress
import json
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from http import HTTPStatus
from types import ModuleType
from typing import Final

from concmon.adapter_options import AdapterOptions, IPNetwork
from concmon.monitor import ConcurrencyMonitor
from concmon.runtime import get_monitor
from concmon.settings import ConfigError
from concmon.snapshot import WORKERS_SCHEMA, WORKERS_SUFFIX, SystemStats
from concmon.system import SystemSampler

Headers = tuple[tuple[str, str], ...]

METHODS: Final = ("GET", "HEAD")
TEXT: Final = "text/plain; charset=utf-8"
JSON: Final = "application/json"

FORWARDING_HEADERS: Final = ("forwarded", "x-forwarded-for", "x-real-ip")
"""Headers by which a proxy names the client it forwards, lower case. uvicorn (and werkzeug's
``ProxyFix``) may have replaced the client address with their value before concmon sees it, and
a client can send them itself, so the allow-list never rests on them unless told to."""


@dataclass(frozen=True, slots=True)
class Answer:
    """One response of a machine endpoint: status, headers (Content-Length included) and body."""

    status: int
    headers: Headers
    body: bytes

    @property
    def status_line(self) -> str:
        """The status as a WSGI server wants it: ``"403 Forbidden"``."""
        return f"{self.status} {HTTPStatus(self.status).phrase}"


def answer(
    status: int, body: bytes, content_type: str, extra: Headers = (), *, head: bool = False
) -> Answer:
    """An :class:`Answer`; for HEAD the body is left out and its length still announced."""
    headers = (
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
        *extra,
    )
    return Answer(status, headers, b"" if head else body)


def client_allowed(address: str | None, allow: Iterable[IPNetwork]) -> bool:
    """Whether the client at ``address`` is in one of the ``allow`` networks.

    An IPv4 client reaching a dual-stack socket shows as ``::ffff:a.b.c.d``; it is matched as
    ``a.b.c.d`` too, so allowing ``127.0.0.1`` lets it in whichever socket the server listens
    on. A zone (``fe80::1%eth0``) is ignored; anything that is not an address is refused.
    """
    if not isinstance(address, str):
        return False
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    candidates: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [ip]
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        candidates.append(ip.ipv4_mapped)
    return any(candidate in network for network in allow for candidate in candidates)


def token_matches(authorization: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``Bearer <token>`` (scheme in any case).

    The header is a Latin-1 string as both ASGI and WSGI servers hand it over, so its bytes
    are compared with the token's UTF-8 bytes, in constant time.
    """
    if not isinstance(authorization, str):
        return False
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    try:
        given = credentials.strip().encode("latin-1")
    except UnicodeEncodeError:
        return False
    return hmac.compare_digest(given, token.encode())


def refusal(
    method: str,
    client: str | None,
    authorization: str | None,
    allow: tuple[IPNetwork, ...] | None,
    token: str | None,
    *,
    forwarded_by: str | None = None,
    allow_forwarded: bool = False,
) -> Answer | None:
    """The 405, 403 or 401 answer a request gets, in that order of checks; None if it may in.

    ``forwarded_by`` names a forwarding header the request carries (one of
    :data:`FORWARDING_HEADERS`). With an allow-list and ``allow_forwarded`` off, such a request
    is refused whatever its address: the address may be the header's claim, and a claim must
    never widen who gets in. ``allow_forwarded`` judges the address handed over as it is,
    trusting the server's proxy settings to have rewritten it only for a real proxy.
    """
    head = method == "HEAD"
    if method not in METHODS:
        return answer(405, b"Method Not Allowed\n", TEXT, (("Allow", "GET, HEAD"),))
    if allow is not None and forwarded_by is not None and not allow_forwarded:
        body = (
            f"Forbidden: the request carries a {forwarding_name(forwarded_by)} header and "
            "metrics_allow judges only direct clients; set metrics_allow_forwarded=True to "
            "trust the proxy's client address\n"
        )
        return answer(403, body.encode(), TEXT, head=head)
    if allow is not None and not client_allowed(client, allow):
        return answer(403, b"Forbidden: client address not allowed\n", TEXT, head=head)
    if token is not None and not token_matches(authorization, token):
        return answer(
            401,
            b"Unauthorized: a valid bearer token is required\n",
            TEXT,
            (("WWW-Authenticate", 'Bearer realm="concmon"'),),
            head=head,
        )
    return None


def forwarding_name(header: str) -> str:
    """A forwarding header's usual spelling (``X-Forwarded-For``) for a message."""
    return "-".join(part.capitalize() if part != "ip" else "IP" for part in header.split("-"))


def forwarding_header(names: Iterable[str]) -> str | None:
    """The first of ``names`` (header names in lower case) that is a forwarding header."""
    return next((name for name in names if name in FORWARDING_HEADERS), None)


def load_exporter(adapter: str) -> ModuleType:
    """``concmon.exporters.prometheus``, or a ConfigError saying which extra to install."""
    try:
        module = importlib.import_module("concmon.exporters.prometheus")
    except ImportError as exc:
        raise ConfigError(
            f"{adapter}: prometheus=True needs the Prometheus exporter: "
            f"pip install 'concmon[prometheus]' ({exc})"
        ) from None
    if not callable(getattr(module, "exposition", None)):
        raise ConfigError(
            f"{adapter}: prometheus=True needs concmon.exporters.prometheus.exposition; "
            "install a matching version: pip install 'concmon[prometheus]'"
        )
    return module


class MachineEndpoints:
    """The JSON and metrics paths of one instrumented application, and their answers.

    Built once when the adapter is installed (a missing exporter fails there). ``monitor``
    gives the monitor whose snapshot the JSON path serves (the process monitor by default).
    :meth:`answer` may take a while (a psutil reading, a multi-process scrape): an event
    loop calls it in a worker thread.
    """

    def __init__(
        self,
        options: AdapterOptions,
        monitor: Callable[[], ConcurrencyMonitor] = get_monitor,
    ) -> None:
        self.json_path = options.json_path
        # Beside the snapshot: every worker of the host, each on its own (see workers_json).
        self.workers_path = (
            options.json_path.rstrip("/") + WORKERS_SUFFIX if options.json_path else None
        )
        self.metrics_path = options.metrics_path if options.prometheus else None
        self.paths = frozenset(
            p for p in (self.json_path, self.workers_path, self.metrics_path) if p is not None
        )
        self._allow = options.metrics_allow
        self._token = options.metrics_token
        self._allow_forwarded = options.metrics_allow_forwarded
        self._monitor = monitor
        self._exporter = load_exporter(options.adapter) if options.prometheus else None
        self._sampler = SystemSampler()
        self._sampler_lock = threading.Lock()

    def activate(self) -> None:
        """Start the exporter's publishing where it needs one (multi-process mode).

        Every worker must publish from its start, or a worker never scraped itself would be
        missing from the others' scrapes.
        """
        activate = getattr(self._exporter, "activate", None)
        if activate is not None:
            activate()

    def answer(
        self,
        path: str,
        method: str,
        client: str | None,
        authorization: str | None,
        accept: str | None,
        *,
        forwarded_by: str | None = None,
    ) -> Answer:
        """The answer to ``method path`` from ``client`` (one of :attr:`paths`);
        ``forwarded_by`` names a forwarding header the request carries (see :func:`refusal`)."""
        refused = refusal(
            method,
            client,
            authorization,
            self._allow,
            self._token,
            forwarded_by=forwarded_by,
            allow_forwarded=self._allow_forwarded,
        )
        if refused is not None:
            return refused
        head = method == "HEAD"
        if path == self.json_path:
            return answer(200, self.snapshot_json(), JSON, head=head)
        if path == self.workers_path:
            return answer(200, self.workers_json(), JSON, head=head)
        assert self._exporter is not None, f"{path!r} is not a machine endpoint"
        body, content_type = self._exporter.exposition(accept)
        return answer(200, body, content_type, head=head)

    def snapshot_json(self) -> bytes:
        """The monitor's snapshot now, with fresh process figures, as compact JSON; for a
        switched-off monitor :func:`switched_off_json` instead, since its zeros would read as
        an idle service."""
        monitor = self._monitor()
        if not monitor.enabled:
            return switched_off_json()
        return _compact(monitor.snapshot(self._system()).to_dict())

    def _system(self) -> SystemStats:
        """Fresh process figures (one sampler, shared by the answering threads)."""
        with self._sampler_lock:
            return self._sampler.sample()

    def workers_json(self) -> bytes:
        """Every live worker's snapshot and the finished workers' folded totals, in one answer
        (``concmon.workers/1``): a client polling one port behind several workers sees the
        whole host on every poll, not whichever worker answered. Only this process in
        single-process mode, where no worker knows the others."""
        monitor = self._monitor()
        if not monitor.enabled:
            return switched_off_json()
        system = self._system()
        host_workers = getattr(self._exporter, "host_workers", None)
        if host_workers is None:
            live, finished = [monitor.snapshot(system)], []
        else:
            # This worker's counts as it just published them, so that an answer from another
            # worker, reading that file, never shows less; its process figures read now.
            live, finished = host_workers()
            live = [replace(s, system=system) if s.pid == os.getpid() else s for s in live]
        return _compact(
            {
                "schema": WORKERS_SCHEMA,
                "workers": [s.to_dict() for s in live],
                "finished": [s.to_dict() for s in finished],
            }
        )


def switched_off_json() -> bytes:
    """What the JSON path answers while monitoring is switched off: ``{"enabled": false}``
    and the process id, no figures (docs/snapshot.md)."""
    return _compact({"enabled": False, "pid": os.getpid()})


def _compact(data: object) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


__all__ = [
    "FORWARDING_HEADERS",
    "Answer",
    "MachineEndpoints",
    "answer",
    "client_allowed",
    "forwarding_header",
    "forwarding_name",
    "load_exporter",
    "refusal",
    "switched_off_json",
    "token_matches",
]
