"""Prometheus metrics: HTTP traffic by route template, transitions fired, refusals by problem code.

Each app gets its own :class:`~prometheus_client.CollectorRegistry` (kept on ``app.state.metrics``), so two
apps in one process (tests) never share or clash over counters. Routes are labelled by their template
(``/api/v1/projects/{project_id}``), never by the concrete path: ids in labels would grow the series without
bound. Unmatched paths share the label ``<unmatched>`` for the same reason.
"""

from __future__ import annotations

import time
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNMATCHED: Final = "<unmatched>"
CONTENT_TYPE: Final = CONTENT_TYPE_LATEST


class Metrics:
    """The service's counters and histograms, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "lifecycle_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "lifecycle_http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route template.",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        )
        self.transitions = Counter(
            "lifecycle_transitions_fired",
            "Triggers fired through the API, by definition key, subject (project, task, notice) and trigger.",
            ["definition", "subject", "trigger"],
            registry=self.registry,
        )
        self.refusals = Counter(
            "lifecycle_refusals",
            "Requests refused, by problem code (gate not satisfied, invalid transition, stale version…).",
            ["code"],
            registry=self.registry,
        )
        self._children: dict[tuple[Counter | Histogram, tuple[str, ...]], Any] = {}

    def child(self, metric: Counter | Histogram, *values: str) -> Any:
        """The series of ``metric`` with these label values (in the order of its label names), looked up once:
        ``labels()`` checks its arguments and takes a lock on every call. As bounded as the series are."""
        key = (metric, values)
        series = self._children.get(key)
        if series is None:
            series = self._children[key] = metric.labels(*values)
        return series

    def fired(self, definition: str, subject: str, trigger: str) -> None:
        """Count one trigger fired."""
        self.child(self.transitions, definition, subject, trigger).inc()

    def refusal(self, code: str) -> None:
        """Count one refusal with problem ``code``."""
        self.child(self.refusals, code).inc()

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts every HTTP request and its latency by route template and status (an exception counts as 500)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            template = getattr(scope.get("route"), "path", None) or UNMATCHED
            method = str(scope.get("method", "?"))
            self.metrics.child(self.metrics.requests, method, template, str(status)).inc()
            self.metrics.child(self.metrics.latency, method, template).observe(time.perf_counter() - started)
