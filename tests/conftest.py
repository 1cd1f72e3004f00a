"""Fixtures shared by the whole suite: real databases (SQLite file, PostgreSQL) and one Ray."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

POSTGRES_ENV = "RAYPIPE_TEST_POSTGRES_URL"


def _postgres_admin_url() -> str | None:
    return os.environ.get(POSTGRES_ENV) or None


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """URL of the PostgreSQL server that `make test` starts. Without it the PostgreSQL half of
    the suite is skipped (under CI, where `make test` always sets it, it is an error)."""
    url = _postgres_admin_url()
    if url is None:
        if os.environ.get("CI"):
            pytest.fail(f"{POSTGRES_ENV} is not set: run the suite through `make test`")
        pytest.skip(f"{POSTGRES_ENV} not set; `make test` starts PostgreSQL and sets it")
    return url


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    import sqlalchemy as sa

    name = f"raypipe_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    base = sa.engine.make_url(postgres_admin_url)
    yield base.set(database=name).render_as_string(hide_password=False)
    _drop_database(admin, name)
    admin.dispose()


def _drop_database(admin: object, name: str) -> None:
    """Drop a test database. FORCE ends the test's leftover connections; where it may not end
    one (a backend of another role, such as an autovacuum worker), retry a plain drop until that
    backend has gone. A database that still cannot be dropped is left in the test-only
    cluster with a warning rather than failing a test that passed."""
    import time
    import warnings

    import sqlalchemy as sa

    assert isinstance(admin, sa.Engine)
    for attempt in range(20):
        suffix = " WITH (FORCE)" if attempt == 0 else ""
        try:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"{suffix}'))
            return
        except sa.exc.DBAPIError:
            time.sleep(0.25)
    warnings.warn(f"could not drop test database {name}", stacklevel=2)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """Each test that takes this runs twice: on a SQLite file and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'raypipe.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture(scope="session")
def ray_head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """One local Ray head for the whole session (2 CPUs), started as its own processes the
    way `raypipe serve` starts it, and stopped at the end; this process is connected to it."""
    import ray

    from ray_nodes.cluster import ensure_local_head

    head = ensure_local_head(tmp_path_factory.mktemp("ray"), num_cpus=2)
    try:
        yield head
    finally:
        if ray.is_initialized():
            ray.shutdown()
        head.stop()
