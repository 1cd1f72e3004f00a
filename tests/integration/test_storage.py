"""SqlRepository against real databases: a SQLite file and PostgreSQL (see tests/conftest.py).

Pipelines and versions here; runs, events and crash safety in test_storage_runs.py.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from control_plane.errors import (
    AlreadyExistsError,
    InvalidArgumentError,
    NotFoundError,
    UnavailableError,
)
from control_plane.storage import _migrate
from control_plane.storage import _schedule_tables as _schedule_tables  # registers its tables
from control_plane.storage._tables import metadata
from control_plane.storage.repository import DEFAULT_PAGE_SIZE, LabelTerm
from control_plane.storage.sql import SqlRepository, open_repository
from raypipe.v1 import pipeline_spec_pb2

# The checkout the code under test comes from: subprocesses run there.
REPO_ROOT = Path(_migrate.__file__).resolve().parents[2]


@pytest.fixture
def repo(db_url: str) -> Iterator[SqlRepository]:
    repository = open_repository(db_url)
    yield repository
    repository.close()


def spec(*node_ids: str) -> pipeline_spec_pb2.PipelineSpec:
    """A chain of noop nodes."""
    nodes: list[pipeline_spec_pb2.Node] = []
    for index, node_id in enumerate(node_ids or ("a",)):
        node = pipeline_spec_pb2.Node(id=node_id, type="noop")
        if index:
            node.depends_on.append(nodes[-1].id)
        nodes.append(node)
    return pipeline_spec_pb2.PipelineSpec(nodes=nodes)


def add_pipeline(repo: SqlRepository, pipeline_id: str, **labels: str) -> None:
    repo.create_pipeline(
        pipeline_id, display_name=pipeline_id.upper(), description="", labels=labels
    )


def add_version(repo: SqlRepository, pipeline_id: str, *, make_default: bool = True) -> int:
    version = repo.create_version(
        pipeline_id, spec("a", "b"), spec_digest="0" * 64, description="", make_default=make_default
    )
    return version.version_number


def field_of(error: InvalidArgumentError) -> str:
    (violation,) = error.violations
    return violation.field


# --- schema -------------------------------------------------------------------------------------
#: Created by migration 0002 with a dialect-specific expression, so not in the metadata.
EXPRESSION_INDEXES = {"uq_runs_schedule_scheduled_time_attempt"}


def test_migrations_create_exactly_the_tables_the_code_uses(repo: SqlRepository) -> None:
    def include(
        obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
    ) -> bool:
        return not (type_ == "index" and name in EXPRESSION_INDEXES)

    with repo._pool.connect() as conn:
        assert _migrate.current_revision(conn) == _migrate.head_revision()
        differences = compare_metadata(
            MigrationContext.configure(conn, opts={"include_object": include}), metadata
        )
        indexes = {index["name"] for index in sa.inspect(conn).get_indexes("runs")}
        if conn.dialect.name == "sqlite":  # SQLite's inspector leaves expression indexes out
            indexes |= set(
                conn.execute(
                    sa.text(
                        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'runs'"
                    )
                ).scalars()
            )
    assert differences == []
    assert indexes >= EXPRESSION_INDEXES


def test_opening_again_is_a_no_op_migration(db_url: str) -> None:
    open_repository(db_url).close()
    again = open_repository(db_url)
    again.ping()
    again.close()


def test_concurrent_first_opens_migrate_once(db_url: str) -> None:
    def open_and_close(_: int) -> None:
        open_repository(db_url).close()

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(open_and_close, range(4)))
    repository = open_repository(db_url)
    add_pipeline(repository, "p")
    repository.close()


def test_ping_and_close(db_url: str) -> None:
    repository = open_repository(db_url)
    repository.ping()
    repository.close()
    with pytest.raises(UnavailableError):
        repository.get_pipeline("p")
    with pytest.raises(UnavailableError):
        repository.ping()


def test_ping_reports_an_unreachable_database() -> None:
    repository = SqlRepository("postgresql://nobody:x@127.0.0.1:1/none?connect_timeout=2")
    with pytest.raises(UnavailableError):
        repository.ping()
    repository.close()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_in_memory_sqlite_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="in-memory"):
        SqlRepository(url)


def test_sqlite_is_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    repository = open_repository(f"sqlite:///{tmp_path / 'sub' / 'dir' / 'raypipe.db'}")
    with repository._pool.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    repository.close()


# --- pipelines ----------------------------------------------------------------------------------
def test_create_and_get_pipeline(repo: SqlRepository) -> None:
    created = repo.create_pipeline(
        "churn", display_name="Churn", description="weekly", labels={"team": "ml"}
    )
    assert created.name == "pipelines/churn"
    assert (created.display_name, created.description) == ("Churn", "weekly")
    assert dict(created.labels) == {"team": "ml"}
    assert created.default_version == ""
    assert created.latest_version_number == 0
    assert created.create_time == created.update_time
    assert created.etag
    assert abs(created.create_time.ToDatetime(UTC) - datetime.now(UTC)).total_seconds() < 60
    assert repo.get_pipeline("churn") == created


def test_times_keep_microseconds(repo: SqlRepository) -> None:
    created = repo.create_pipeline("p", display_name="", description="", labels={})
    assert repo.get_pipeline("p").create_time.nanos == created.create_time.nanos
    assert created.create_time.nanos % 1000 == 0


def test_duplicate_pipeline(repo: SqlRepository) -> None:
    add_pipeline(repo, "p")
    with pytest.raises(AlreadyExistsError) as caught:
        add_pipeline(repo, "p")
    assert caught.value.reason == "PIPELINE_ALREADY_EXISTS"
    assert "pipelines/p" in caught.value.message


def test_get_missing_pipeline(repo: SqlRepository) -> None:
    with pytest.raises(NotFoundError) as caught:
        repo.get_pipeline("nope")
    assert caught.value.reason == "PIPELINE_NOT_FOUND"
    assert "pipelines/nope" in caught.value.message


def test_list_pipelines_newest_first_across_pages(repo: SqlRepository) -> None:
    ids = [f"p{i:02d}" for i in range(23)]
    for pipeline_id in ids:
        add_pipeline(repo, pipeline_id)
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = repo.list_pipelines(page_size=5, page_token=token, terms=())
        seen += [p.name.removeprefix("pipelines/") for p in page.items]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert seen == ids[::-1]
    assert pages == 5


def test_list_pipelines_page_sizes(repo: SqlRepository) -> None:
    for i in range(DEFAULT_PAGE_SIZE + 2):
        add_pipeline(repo, f"p{i}")
    default = repo.list_pipelines(page_size=0, page_token="", terms=())
    assert len(default.items) == DEFAULT_PAGE_SIZE
    assert default.next_page_token
    huge = repo.list_pipelines(page_size=10**6, page_token="", terms=())
    assert len(huge.items) == DEFAULT_PAGE_SIZE + 2
    assert huge.next_page_token == ""
    with pytest.raises(InvalidArgumentError) as caught:
        repo.list_pipelines(page_size=-1, page_token="", terms=())
    assert field_of(caught.value) == "page_size"


@pytest.mark.parametrize("token", ["garbage!", "bm90IGpzb24", "eyJrIjogMX0", "W10"])
def test_malformed_page_token(repo: SqlRepository, token: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        repo.list_pipelines(page_size=1, page_token=token, terms=())
    assert field_of(caught.value) == "page_token"


def test_page_token_is_bound_to_its_filter(repo: SqlRepository) -> None:
    for i in range(3):
        add_pipeline(repo, f"p{i}", team="ml")
    ml = [LabelTerm("labels.team", "=", "ml")]
    token = repo.list_pipelines(page_size=1, page_token="", terms=ml).next_page_token
    assert repo.list_pipelines(page_size=1, page_token=token, terms=ml).items
    with pytest.raises(InvalidArgumentError) as caught:
        repo.list_pipelines(page_size=1, page_token=token, terms=())
    assert field_of(caught.value) == "page_token"
    assert "different" in caught.value.violations[0].description
    # A token of another list is refused too.
    add_version(repo, "p0")
    add_version(repo, "p0")
    version_token = repo.list_versions(
        "p0", page_size=1, page_token="", omit_spec=True
    ).next_page_token
    with pytest.raises(InvalidArgumentError):
        repo.list_pipelines(page_size=1, page_token=version_token, terms=ml)


def test_filter_pipelines_by_labels_and_display_name(repo: SqlRepository) -> None:
    add_pipeline(repo, "a", team="ml", env="prod")
    add_pipeline(repo, "b", team="ml")
    add_pipeline(repo, "c", team="data", **{"app.kubernetes-io": "x"})
    add_pipeline(repo, "d")

    def ids(*terms: LabelTerm) -> list[str]:
        page = repo.list_pipelines(page_size=0, page_token="", terms=terms)
        return sorted(p.name.removeprefix("pipelines/") for p in page.items)

    assert ids(LabelTerm("labels.team", "=", "ml")) == ["a", "b"]
    assert ids(LabelTerm("labels.team", "!=", "ml")) == ["c", "d"]
    assert ids(LabelTerm("labels.env", ":*")) == ["a"]
    assert ids(LabelTerm("labels.app.kubernetes-io", "=", "x")) == ["c"]
    assert ids(LabelTerm("labels.team", "=", "ml"), LabelTerm("labels.env", "!=", "prod")) == ["b"]
    assert ids(LabelTerm("display_name", "=", "C")) == ["c"]
    assert ids(LabelTerm("display_name", "!=", "C")) == ["a", "b", "d"]
    assert ids(LabelTerm("labels.team", "=", "nobody")) == []
    for bad in (LabelTerm("owner", "=", "x"), LabelTerm("labels.a'b", "=", "x")):
        with pytest.raises(InvalidArgumentError) as caught:
            ids(bad)
        assert field_of(caught.value) == "filter"


# --- versions -----------------------------------------------------------------------------------
def test_versions_are_numbered_and_become_default(repo: SqlRepository) -> None:
    add_pipeline(repo, "p")
    before = repo.get_pipeline("p")
    the_spec = spec("load", "train", "save")
    first = repo.create_version(
        "p", the_spec, spec_digest="ab" * 32, description="first", make_default=True
    )
    assert first.name == "pipelines/p/versions/1"
    assert first.version_number == 1
    assert first.spec == the_spec
    assert (first.spec_digest, first.description) == ("ab" * 32, "first")
    assert repo.get_version("p", 1) == first
    after = repo.get_pipeline("p")
    assert after.default_version == "pipelines/p/versions/1"
    assert after.latest_version_number == 1
    assert after.etag != before.etag
    assert after.update_time.ToDatetime() > before.update_time.ToDatetime()

    assert add_version(repo, "p", make_default=False) == 2
    kept = repo.get_pipeline("p")
    assert kept.default_version == "pipelines/p/versions/1"
    assert kept.latest_version_number == 2
    assert add_version(repo, "p") == 3
    assert repo.get_pipeline("p").default_version == "pipelines/p/versions/3"


def test_spec_is_stored_exactly(repo: SqlRepository) -> None:
    add_pipeline(repo, "p")
    the_spec = spec("a", "b")
    the_spec.nodes[0].params.update({"path": "/data/x.csv", "n": 3, "opts": {"sep": ";"}})
    the_spec.parameters["lr"].number_value = 0.1
    the_spec.nodes[1].resources.num_gpus = 0.5
    repo.create_version("p", the_spec, spec_digest="", description="", make_default=True)
    assert repo.get_version("p", 1).spec == the_spec


def test_version_errors(repo: SqlRepository) -> None:
    with pytest.raises(NotFoundError) as caught:
        add_version(repo, "nope")
    assert caught.value.reason == "PIPELINE_NOT_FOUND"
    add_pipeline(repo, "p")
    with pytest.raises(NotFoundError) as caught:
        repo.get_version("p", 1)
    assert caught.value.reason == "PIPELINE_VERSION_NOT_FOUND"
    assert "pipelines/p/versions/1" in caught.value.message
    with pytest.raises(NotFoundError) as caught:
        repo.get_version("nope", 1)
    assert caught.value.reason == "PIPELINE_NOT_FOUND"


def test_list_versions_pages_newest_first(repo: SqlRepository) -> None:
    add_pipeline(repo, "p")
    add_pipeline(repo, "q")
    for _ in range(12):
        add_version(repo, "p")
    numbers: list[int] = []
    token = ""
    while True:
        page = repo.list_versions("p", page_size=5, page_token=token, omit_spec=False)
        assert all(v.spec.nodes for v in page.items)
        numbers += [v.version_number for v in page.items]
        token = page.next_page_token
        if not token:
            break
    assert numbers == list(range(12, 0, -1))
    token = repo.list_versions("p", page_size=5, page_token="", omit_spec=True).next_page_token
    with pytest.raises(InvalidArgumentError) as caught:
        repo.list_versions("q", page_size=5, page_token=token, omit_spec=True)
    assert field_of(caught.value) == "page_token"
    empty = repo.list_versions("q", page_size=5, page_token="", omit_spec=True)
    assert (empty.items, empty.next_page_token) == ([], "")
    with pytest.raises(NotFoundError):
        repo.list_versions("nope", page_size=5, page_token="", omit_spec=True)


def test_list_versions_omit_spec_does_not_read_specs(repo: SqlRepository) -> None:
    add_pipeline(repo, "p")
    add_version(repo, "p")
    statements: list[str] = []

    def remember(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    sa.event.listen(repo._pool, "before_cursor_execute", remember)
    try:
        (version,) = repo.list_versions("p", page_size=0, page_token="", omit_spec=True).items
    finally:
        sa.event.remove(repo._pool, "before_cursor_execute", remember)
    assert not version.HasField("spec")
    assert version.spec_digest == "0" * 64
    assert [s for s in statements if "pipeline_versions.spec," in s or ".spec " in s] == []
    assert any("pipeline_versions" in s for s in statements)


def test_set_default_version(repo: SqlRepository) -> None:
    add_pipeline(repo, "p")
    add_version(repo, "p")
    add_version(repo, "p")
    rolled = repo.set_default_version("p", 1)
    assert rolled.default_version == "pipelines/p/versions/1"
    assert rolled.latest_version_number == 2
    assert repo.get_pipeline("p") == rolled
    # Setting the default it already has changes nothing, not even the etag.
    assert repo.set_default_version("p", 1) == rolled
    with pytest.raises(NotFoundError) as caught:
        repo.set_default_version("p", 3)
    assert caught.value.reason == "PIPELINE_VERSION_NOT_FOUND"
    with pytest.raises(NotFoundError) as caught:
        repo.set_default_version("nope", 1)
    assert caught.value.reason == "PIPELINE_NOT_FOUND"
    assert repo.get_pipeline("p").default_version == "pipelines/p/versions/1"


def test_fifty_concurrent_creates_number_one_to_fifty(repo: SqlRepository) -> None:
    add_pipeline(repo, "p")
    start = threading.Barrier(50)

    def create(_: int) -> int:
        start.wait()
        return add_version(repo, "p")

    with ThreadPoolExecutor(50) as pool:
        numbers = list(pool.map(create, range(50)))
    assert sorted(numbers) == list(range(1, 51))
    stored = repo.list_versions("p", page_size=100, page_token="", omit_spec=True).items
    assert [v.version_number for v in stored] == list(range(50, 0, -1))
    assert repo.get_pipeline("p").latest_version_number == 50


def test_concurrent_creates_from_several_processes(repo: SqlRepository, db_url: str) -> None:
    add_pipeline(repo, "p")
    script = textwrap.dedent(
        """
        import sys
        from control_plane.storage.sql import SqlRepository
        from raypipe.v1 import pipeline_spec_pb2
        repo = SqlRepository(sys.argv[1])
        spec = pipeline_spec_pb2.PipelineSpec(nodes=[pipeline_spec_pb2.Node(id="a", type="noop")])
        for _ in range(10):
            v = repo.create_version("p", spec, spec_digest="", description="", make_default=True)
            print(v.version_number, flush=True)
        repo.close()
        """
    )
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", script, db_url], stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT
        )
        for _ in range(4)
    ]
    numbers: list[int] = []
    for worker in workers:
        out, _ = worker.communicate(timeout=120)
        assert worker.returncode == 0
        numbers += [int(line) for line in out.split()]
    assert sorted(numbers) == list(range(1, 41))
    assert repo.get_pipeline("p").latest_version_number == 40
