"""The control plane's handle on the engine."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import ray

from ray_nodes.engine.supervisor import Supervisor
from ray_nodes.engine.task import SUPERVISOR_NAME
from ray_nodes.engine.types import PollResult, RunSubmission

log = logging.getLogger("raypipe.engine")


class RayEngine:
    """Connects to a Ray cluster and talks to its run supervisor (creating it if needed).

    Args:
        address: The cluster's address for ``ray.init``.
        namespace: Ray namespace of the supervisor; control planes that share it share runs.
    """

    def __init__(self, address: str, *, namespace: str = "raypipe") -> None:
        self.address = address
        self.namespace = namespace
        self._supervisor: Any = None
        #: The cluster's Ray dashboard (``http://host:port``), when this process connected and
        #: Ray reported one; "" otherwise.
        self.dashboard_url = ""

    def start(self) -> None:
        """Connect (once per process) and get or create the detached supervisor."""
        if not ray.is_initialized():
            context = ray.init(
                address=self.address,
                namespace=self.namespace,
                log_to_driver=False,
                configure_logging=False,
            )
            dashboard = getattr(context, "dashboard_url", "") or ""
            self.dashboard_url = (
                dashboard if not dashboard or "://" in dashboard else f"http://{dashboard}"
            )
        else:
            connected = ray.get_runtime_context().gcs_address
            if connected.rsplit(":", 1)[-1] != self.address.rsplit(":", 1)[-1]:
                raise RuntimeError(
                    f"this process is already connected to the Ray cluster at {connected}, "
                    f"not to {self.address}"
                )
        actor = ray.remote(Supervisor).options(
            name=SUPERVISOR_NAME,
            namespace=self.namespace,
            lifetime="detached",
            get_if_exists=True,
            num_cpus=0,
            max_concurrency=10_000,
            max_restarts=0,
        )
        self._supervisor = actor.remote(self.namespace)
        ray.get(self._supervisor.ping.remote(), timeout=120)

    def submit(self, submission: RunSubmission) -> None:
        """Hand a run to the supervisor; returns at once. Submitting a run twice is harmless.

        The run is registered first (one short round trip), so a poll that follows at once
        already knows it. The driving call is named ``run/{run_id}`` so the dashboard and the
        State API show it.
        """
        ray.get(self._supervisor.register.remote(submission), timeout=60)
        self._supervisor.drive.options(name=f"run/{submission.run_id}").remote(submission.run_id)

    def cancel(self, run_id: str) -> None:
        ray.get(self._supervisor.cancel.remote(run_id), timeout=60)

    def poll(self, cursors: Mapping[str, int], timeout_s: float) -> PollResult:
        """New events of the given runs after their cursors, waiting up to ``timeout_s``."""
        found, unknown = ray.get(
            self._supervisor.poll.remote(dict(cursors), timeout_s), timeout=timeout_s + 60
        )
        return PollResult(events=found, unknown=frozenset(unknown))

    def ack(self, run_id: str, seq: int) -> None:
        """Events up to ``seq`` are stored: the supervisor may forget them."""
        self._supervisor.ack.remote(run_id, seq)

    def known_runs(self) -> list[str]:
        return list(ray.get(self._supervisor.known_runs.remote(), timeout=60))

    def cluster_summary(self) -> dict[str, Any]:
        return {"address": self.address, "resources": ray.cluster_resources()}

    def close(self) -> None:
        """Forget the supervisor; runs go on. The process stays connected to Ray."""
        self._supervisor = None
