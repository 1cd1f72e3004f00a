"""docs/grafana/raypipe.json queries only metrics the server exports, under their exported
names (counters with _total, histograms with _bucket), and parses as a Grafana dashboard."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import generate_latest

from control_plane.metrics import Metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "raypipe.json"
METRIC = re.compile(r"\b((?:grpc_server|raypipe)_[a-z_]+)\b")


def exported_names() -> set[str]:
    metrics = Metrics()
    metrics.count_runs(lambda: {})
    # Every labelled series once, so that the exposition lists every name.
    metrics.started.labels("unary", "s", "m").inc()
    metrics.handled.labels("unary", "s", "m", "OK").inc()
    metrics.handling.labels("unary", "s", "m").observe(0.1)
    metrics.received.labels("unary", "s", "m").inc()
    metrics.sent.labels("unary", "s", "m").inc()
    metrics.node_seconds.labels("noop", "succeeded").observe(1)
    text = generate_latest(metrics.registry).decode()
    return {
        line.split("{")[0].split(" ")[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def test_the_dashboard_queries_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exported = exported_names()
    used = set()
    for panel in dashboard["panels"]:
        assert panel["datasource"]["type"] == "prometheus"
        for target in panel["targets"]:
            names = set(METRIC.findall(target["expr"]))
            assert names, target["expr"]
            used |= names
    assert used - exported == set()
    # Every family raypipe exports is on the dashboard.
    families = {re.sub(r"_(total|bucket|count|sum|created)$", "", name) for name in exported}
    shown = {re.sub(r"_(total|bucket|count|sum|created)$", "", name) for name in used}
    assert families - shown <= {"grpc_server_msg_received", "grpc_server_msg_sent"}
