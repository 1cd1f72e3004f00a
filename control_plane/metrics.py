"""The control plane's Prometheus metrics, served at ``/metrics`` on the HTTP port
(docs/metrics.md), from one registry per server.

- The standard gRPC server metrics, under the names of go-grpc-middleware's Prometheus provider
  (``grpc_server_started_total``, ``grpc_server_handled_total``,
  ``grpc_server_handling_seconds``, ``grpc_server_msg_received_total``,
  ``grpc_server_msg_sent_total``), so existing Grafana dashboards for gRPC servers work as
  they are.
- raypipe's own: runs by state (counted in the database at each scrape, so every replica
  reports the same), node durations by node type, events recorded and the supervisor's
  backlog, scheduler fire lateness, and the MLflow tracker's queue.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from control_plane.interceptors import HandlerWrapper
from raypipe.v1 import run_pb2

#: Buckets of go-grpc-middleware's handling-time histogram (Prometheus' defaults).
GRPC_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
NODE_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)
LATENESS_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15, 60)


class _RunsByState(Collector):
    """``raypipe_runs{state}``: the runs stored, by state, counted when scraped."""

    def __init__(self, count: Callable[[], dict[int, int]]) -> None:
        self._count = count

    def collect(self) -> Iterable[Any]:
        family = GaugeMetricFamily("raypipe_runs", "Runs stored, by state.", labels=["state"])
        counts = self._count()
        for value, name in run_pb2.Run.State.items():  # type: ignore[attr-defined]
            if name != 0:
                family.add_metric([value.removeprefix("STATE_")], counts.get(name, 0))
        yield family


class Metrics:
    """Every metric of one control plane, in its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        grpc_labels = ["grpc_type", "grpc_service", "grpc_method"]
        self.started = Counter(
            "grpc_server_started",
            "Total number of RPCs started on the server.",
            grpc_labels,
            registry=r,
        )
        self.handled = Counter(
            "grpc_server_handled",
            "Total number of RPCs completed on the server, regardless of success or failure.",
            [*grpc_labels, "grpc_code"],
            registry=r,
        )
        self.handling = Histogram(
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC that had been application-level "
            "handled by the server.",
            grpc_labels,
            buckets=GRPC_BUCKETS,
            registry=r,
        )
        self.received = Counter(
            "grpc_server_msg_received",
            "Total number of RPC messages received on the server.",
            grpc_labels,
            registry=r,
        )
        self.sent = Counter(
            "grpc_server_msg_sent",
            "Total number of gRPC messages sent by the server.",
            grpc_labels,
            registry=r,
        )
        self.node_seconds = Histogram(
            "raypipe_node_duration_seconds",
            "How long node executions took, by node type and final state.",
            ["node_type", "state"],
            buckets=NODE_BUCKETS,
            registry=r,
        )
        self.events = Counter(
            "raypipe_events_recorded", "Engine events recorded into runs' histories.", registry=r
        )
        self.backlog = Gauge(
            "raypipe_supervisor_backlog_events",
            "Engine events fetched by the supervisor and not recorded yet.",
            registry=r,
        )
        self.followed = Gauge(
            "raypipe_supervisor_runs_followed", "Runs the supervisor is following.", registry=r
        )
        self.adopted = Counter(
            "raypipe_supervisor_runs_adopted",
            "Active runs this replica took to record because nobody recorded them (their "
            "recorder stopped or died, or this process restarted).",
            registry=r,
        )
        self.leases_lost = Counter(
            "raypipe_supervisor_leases_lost",
            "Runs this replica stopped recording because another replica took them over (its "
            "lease had lapsed).",
            registry=r,
        )
        self.lateness = Histogram(
            "raypipe_scheduler_fire_lateness_seconds",
            "How late each schedule fire started its run after its nominal time (a configured "
            "jitter included).",
            buckets=LATENESS_BUCKETS,
            registry=r,
        )
        self.tracker_queue = Gauge(
            "raypipe_tracker_queue",
            "Records waiting for the experiment tracker (MLflow).",
            registry=r,
        )

    def count_runs(self, count: Callable[[], dict[int, int]]) -> None:
        """Report ``raypipe_runs{state}`` from ``count`` (state number -> runs) at each scrape."""
        self.registry.register(_RunsByState(count))

    def wsgi_app(self) -> Any:
        """The ``/metrics`` WSGI application (the text exposition format)."""
        return make_wsgi_app(self.registry)


def _names(method: str) -> tuple[str, str]:
    service, _, name = method.lstrip("/").partition("/")
    return service, name


def _kind(handler: grpc.RpcMethodHandler) -> str:
    if handler.unary_unary is not None:
        return "unary"
    if handler.unary_stream is not None:
        return "server_stream"
    if handler.stream_unary is not None:
        return "client_stream"
    return "bidi_stream"


class MetricsInterceptor(HandlerWrapper):
    """Counts and times every gRPC call as go-grpc-middleware's provider does."""

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self.metrics = metrics

    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        service, name = _names(method)
        kind = _kind(handler)
        m = self.metrics
        labels = (kind, service, name)
        started, received, sent = (
            m.started.labels(*labels),
            m.received.labels(*labels),
            m.sent.labels(*labels),
        )
        timing = m.handling.labels(*labels)

        def done(context: grpc.ServicerContext, began: float, error: BaseException | None) -> None:
            code = context.code()  # set by an abort; None when the call returned normally
            if code is None:
                code = grpc.StatusCode.OK if error is None else grpc.StatusCode.UNKNOWN
            m.handled.labels(*labels, code.name).inc()
            timing.observe(time.perf_counter() - began)

        def requests_in(request: Any, streamed: bool) -> Any:
            if streamed:
                return _counted(request, received)
            received.inc()
            return request

        def answering(inner: Callable[..., Any], streamed_in: bool) -> Callable[..., Any]:
            """A handler of one response, counted and timed."""

            def call(request: Any, context: grpc.ServicerContext) -> Any:
                began, error = time.perf_counter(), None
                started.inc()
                try:
                    response = inner(requests_in(request, streamed_in), context)
                    sent.inc()
                    return response
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    done(context, began, error)

            return call

        def streaming(inner: Callable[..., Any], streamed_in: bool) -> Callable[..., Any]:
            """A handler of a response stream, each message counted, the whole call timed."""

            def call(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                began, error = time.perf_counter(), None
                started.inc()
                try:
                    for response in inner(requests_in(request, streamed_in), context):
                        sent.inc()
                        yield response
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    done(context, began, error)

            return call

        serializers = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                answering(handler.unary_unary, False), **serializers
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                streaming(handler.unary_stream, False), **serializers
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                answering(handler.stream_unary, True), **serializers
            )
        return grpc.stream_stream_rpc_method_handler(
            streaming(handler.stream_stream, True), **serializers
        )


def _counted(requests: Iterator[Any], counter: Any) -> Iterator[Any]:
    for request in requests:
        counter.inc()
        yield request
