"""Run handles: a run to follow, wait for, cancel or retry, bound to the client that made it.

``client.create_run(...)`` returns the Run message, like every other method; ``client.run(...)``
starts the same run and returns a :class:`RunHandle`, so that a script reads
``client.run("churn").wait()``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

from raypipe import _rpc as rpc
from raypipe._errors import RunFailedError, WaitTimeoutError
from raypipe._names import RunRef, run_name
from raypipe.v1 import run_pb2, run_service_pb2

if TYPE_CHECKING:
    from raypipe._aio import AsyncClient
    from raypipe._client import Client


class RunHandle:
    """A run followed through a :class:`~raypipe.Client`; :meth:`Client.run` returns one.

    Attributes:
        name: The run's resource name, ``runs/{id}``.
        last: The run as this handle last saw it; None for a handle made from a name until
            a method fetched it.
    """

    def __init__(self, client: Client, run: RunRef) -> None:
        self._client = client
        self.name = run_name(run)
        self.last: run_pb2.Run | None = run if isinstance(run, run_pb2.Run) else None

    def get(self) -> run_pb2.Run:
        """Fetch the run's current state."""
        self.last = self._client.get_run(self.name)
        return self.last

    def watch(self, *, timeout: float | None = None) -> Iterator[run_service_pb2.WatchRunResponse]:
        """Stream the run's events; see :meth:`Client.watch`."""
        for response in self._client.watch_run(self.name, timeout=timeout):
            if response.HasField("run"):
                self.last = response.run
            yield response

    def wait(self, *, timeout: float | None = None, raise_on_failure: bool = True) -> run_pb2.Run:
        """Block until the run ends and return it; see :meth:`Client.wait_run`.

        Raises:
            RunFailedError: The run ended FAILED or CANCELLED and ``raise_on_failure`` is set.
            WaitTimeoutError: ``timeout`` seconds passed first.
        """
        try:
            self.last = self._client.wait_run(
                self.name, timeout=timeout, raise_on_failure=raise_on_failure
            )
        except (RunFailedError, WaitTimeoutError) as e:
            self.last = e.run or self.last
            raise
        return self.last

    def cancel(self) -> run_pb2.Run:
        """Cancel the run; see :meth:`Client.cancel_run`."""
        self.last = self._client.cancel_run(self.name)
        return self.last

    def retry(self, *, request_id: str | None = None) -> RunHandle:
        """Retry the ended run, reusing its succeeded nodes; a handle on the new run."""
        return RunHandle(self._client, self._client.retry_run(self.name, request_id=request_id))

    def __repr__(self) -> str:
        return f"RunHandle({self.name!r}, state={_state(self.last)})"


class AsyncRunHandle:
    """The :class:`RunHandle` of an :class:`~raypipe.AsyncClient`; methods are coroutines.

    Attributes:
        name: The run's resource name, ``runs/{id}``.
        last: The run as this handle last saw it, or None.
    """

    def __init__(self, client: AsyncClient, run: RunRef) -> None:
        self._client = client
        self.name = run_name(run)
        self.last: run_pb2.Run | None = run if isinstance(run, run_pb2.Run) else None

    async def get(self) -> run_pb2.Run:
        """Fetch the run's current state."""
        self.last = await self._client.get_run(self.name)
        return self.last

    async def watch(
        self, *, timeout: float | None = None
    ) -> AsyncIterator[run_service_pb2.WatchRunResponse]:
        """Stream the run's events; see :meth:`AsyncClient.watch`."""
        async for response in self._client.watch_run(self.name, timeout=timeout):
            if response.HasField("run"):
                self.last = response.run
            yield response

    async def wait(
        self, *, timeout: float | None = None, raise_on_failure: bool = True
    ) -> run_pb2.Run:
        """Wait until the run ends and return it; see :meth:`AsyncClient.wait_run`."""
        try:
            self.last = await self._client.wait_run(
                self.name, timeout=timeout, raise_on_failure=raise_on_failure
            )
        except (RunFailedError, WaitTimeoutError) as e:
            self.last = e.run or self.last
            raise
        return self.last

    async def cancel(self) -> run_pb2.Run:
        """Cancel the run; see :meth:`AsyncClient.cancel_run`."""
        self.last = await self._client.cancel_run(self.name)
        return self.last

    async def retry(self, *, request_id: str | None = None) -> AsyncRunHandle:
        """Retry the ended run, reusing its succeeded nodes; a handle on the new run."""
        new = await self._client.retry_run(self.name, request_id=request_id)
        return AsyncRunHandle(self._client, new)

    def __repr__(self) -> str:
        return f"AsyncRunHandle({self.name!r}, state={_state(self.last)})"


def _state(run: run_pb2.Run | None) -> str:
    return rpc.state_name(run.state) if run is not None else "?"
