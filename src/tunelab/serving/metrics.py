"""The server's Prometheus metrics, in a registry of its own (two apps in one process never mix counts).

`tunelab_requests_total{route,status}`, `tunelab_request_seconds{route}` (latency, histogram),
`tunelab_batch_size` (inputs per forward pass), `tunelab_batch_seconds` (forward-pass time),
`tunelab_queue_depth` (requests waiting for a batch) and `tunelab_inputs_total{route}`.
Routes are the app's own paths; anything else is counted as `other`, so a scan cannot grow the label set.
"""

from __future__ import annotations

from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["ServerMetrics", "CONTENT_TYPE_LATEST"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServerMetrics:
    def __init__(self, routes: set[str], queue_depth: Callable[[], int]) -> None:
        self.routes = routes
        self.registry = CollectorRegistry()
        self.requests = Counter("tunelab_requests", "HTTP requests by route and status code.", ["route", "status"],
                                registry=self.registry)
        self.latency = Histogram("tunelab_request_seconds", "Request latency, first byte in to last byte out.",
                                 ["route"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.inputs = Counter("tunelab_inputs", "Texts received in well-formed requests.", ["route"],
                              registry=self.registry)
        self.batch_size = Histogram("tunelab_batch_size", "Inputs per forward pass (micro-batch size).",
                                    buckets=_BATCH_BUCKETS, registry=self.registry)
        self.batch_seconds = Histogram("tunelab_batch_seconds", "Time of one forward pass (one micro-batch).",
                                       buckets=_LATENCY_BUCKETS, registry=self.registry)
        depth = Gauge("tunelab_queue_depth", "Requests waiting for a micro-batch.", registry=self.registry)
        depth.set_function(queue_depth)

    def route(self, path: str) -> str:
        return path if path in self.routes else "other"

    def observe_request(self, path: str, status: int, seconds: float) -> None:
        route = self.route(path)
        self.requests.labels(route=route, status=str(status)).inc()
        self.latency.labels(route=route).observe(seconds)

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
