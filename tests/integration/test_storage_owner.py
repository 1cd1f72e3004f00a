"""One control plane per SQLite database, and the pipeline cache that rests on it.

A repository opened with ``exclusive=True`` (as ``raypipe serve`` opens it) claims a SQLite
file for its process and serves pipelines from memory; on PostgreSQL, which replicas share,
it does neither. The cache must never answer with a pipeline older than the last write that
returned, whatever the interleaving of reads and writes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from control_plane.errors import NotFoundError, UnavailableError
from control_plane.storage._owner import DatabaseInUseError
from control_plane.storage.sql import SqlRepository, open_repository
from tests.integration.conftest import ServerProcess
from tests.integration.test_storage import REPO_ROOT, add_pipeline, spec


def _add_version(repo: SqlRepository, pipeline_id: str, *, make_default: bool = True) -> int:
    version = repo.create_version(
        pipeline_id, spec("a"), spec_digest="0" * 64, description="", make_default=make_default
    )
    return version.version_number


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'raypipe.db'}"


@pytest.fixture
def owner(sqlite_url: str) -> Iterator[SqlRepository]:
    repository = open_repository(sqlite_url, exclusive=True)
    yield repository
    repository.close()


# --- the claim -------------------------------------------------------------------------------
def test_a_second_exclusive_open_is_refused_naming_the_file(
    owner: SqlRepository, tmp_path: Path
) -> None:
    database = tmp_path / "raypipe.db"
    with pytest.raises(DatabaseInUseError) as caught:
        SqlRepository(f"sqlite:///{database}", exclusive=True)
    assert str(database.resolve()) in str(caught.value)
    assert "another raypipe control plane" in str(caught.value)
    # Tools that only read or migrate (exclusive=False) still open it.
    reader = open_repository(f"sqlite:///{database}")
    reader.close()


def test_close_lets_go_of_the_claim(sqlite_url: str) -> None:
    first = open_repository(sqlite_url, exclusive=True)
    add_pipeline(first, "p")
    first.close()
    second = open_repository(sqlite_url, exclusive=True)
    assert second.get_pipeline("p").name == "pipelines/p"
    second.close()


def test_the_claim_dies_with_its_process(sqlite_url: str) -> None:
    """``kill -9`` leaves no stale claim: the kernel drops the lock with the process."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from control_plane.storage.sql import open_repository
                repo = open_repository({sqlite_url!r}, exclusive=True)
                print("claimed", flush=True)
                time.sleep(600)
                """
            ),
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "claimed"
        with pytest.raises(DatabaseInUseError):
            SqlRepository(sqlite_url, exclusive=True)
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
    finally:
        if holder.poll() is None:
            holder.kill()
    open_repository(sqlite_url, exclusive=True).close()


def test_every_spelling_of_the_file_meets_the_same_claim(
    owner: SqlRepository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claim is on the file SQLite opens, whatever the URL says: a ``file:`` URI, a
    relative path from another directory, a path through a symlink."""
    database = tmp_path / "raypipe.db"
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "link").symlink_to(tmp_path, target_is_directory=True)
    monkeypatch.chdir(tmp_path / "elsewhere")
    for url in (
        f"sqlite:///file:{database}?uri=true",
        "sqlite:///../raypipe.db",
        f"sqlite:///{tmp_path / 'link' / 'raypipe.db'}",
    ):
        with pytest.raises(DatabaseInUseError):
            SqlRepository(url, exclusive=True)
    assert not (tmp_path / "elsewhere" / "file:").exists()


def test_a_url_that_is_no_file_is_refused_before_any_claim(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for url in ("sqlite://", "sqlite:///:memory:"):
        with pytest.raises(ValueError, match="in-memory"):
            SqlRepository(url, exclusive=True)
    assert list(tmp_path.iterdir()) == []


def _hold_a_write(repo: SqlRepository) -> tuple[threading.Thread, threading.Event]:
    """A write transaction held open in a thread until the returned event is set."""
    writing, release = threading.Event(), threading.Event()

    def slow_write() -> None:
        with repo._write():
            writing.set()
            assert release.wait(30)

    writer = threading.Thread(target=slow_write)
    writer.start()
    assert writing.wait(30)
    return writer, release


def test_close_lets_writes_under_way_end_before_it_lets_go(sqlite_url: str) -> None:
    first = open_repository(sqlite_url, exclusive=True)
    writer, release = _hold_a_write(first)
    closer = threading.Thread(target=first.close)
    closer.start()
    closer.join(0.5)
    assert closer.is_alive(), "close() returned while a write was still under way"
    with pytest.raises(DatabaseInUseError):
        SqlRepository(sqlite_url, exclusive=True)
    release.set()
    writer.join(30)
    closer.join(30)
    assert not closer.is_alive()
    open_repository(sqlite_url, exclusive=True).close()  # let go once the write ended


def test_a_write_that_outlasts_close_keeps_the_claim(sqlite_url: str) -> None:
    first = open_repository(sqlite_url, exclusive=True)
    writer, release = _hold_a_write(first)
    first.close(wait_for_writes_s=0.1)
    with pytest.raises(DatabaseInUseError):  # held until this process exits
        SqlRepository(sqlite_url, exclusive=True)
    release.set()
    writer.join(30)
    with pytest.raises(UnavailableError):  # and nothing new starts on closed storage
        add_pipeline(first, "late")
    assert first._claim is not None
    first._claim.release()  # the test's stand-in for the process exiting


def test_postgresql_takes_no_claim_and_reads_are_shared(postgres_url: str) -> None:
    """Replicas share PostgreSQL: two exclusive opens work, and each sees the other's writes
    at once (no cache between them)."""
    one = open_repository(postgres_url, exclusive=True)
    two = open_repository(postgres_url, exclusive=True)
    try:
        add_pipeline(one, "p")
        _add_version(one, "p")
        assert two.get_pipeline("p").default_version == "pipelines/p/versions/1"
        _add_version(one, "p")
        assert two.get_pipeline("p").default_version == "pipelines/p/versions/2"
        one.set_default_version("p", 1)
        assert two.get_pipeline("p").default_version == "pipelines/p/versions/1"
    finally:
        one.close()
        two.close()


def test_a_second_server_on_the_same_data_dir_exits_with_the_reason(
    tmp_path: Path, ray_head: Any
) -> None:
    env = ray_head.client_env()
    first = ServerProcess(tmp_path / "data", "--ray-address", ray_head.address, env=env)
    first.start()
    try:
        second = ServerProcess(tmp_path / "data", "--ray-address", ray_head.address, env=env)
        with pytest.raises(RuntimeError, match="server exited early"):
            second.start(timeout=120)
        assert second.proc is not None
        assert second.proc.wait(timeout=30) == 1
        log = second.log.read_text()  # both servers write here; only the second fails
        assert "in use by another raypipe control plane" in log
        assert "Traceback" not in log
        assert first.proc is not None
        assert first.proc.poll() is None, "the first one serves on"
    finally:
        assert first.terminate() == 0


# --- the cache -------------------------------------------------------------------------------
def test_reads_follow_every_write(owner: SqlRepository) -> None:
    add_pipeline(owner, "p", team="a")
    assert owner.get_pipeline("p").default_version == ""
    _add_version(owner, "p")
    assert owner.get_pipeline("p").default_version == "pipelines/p/versions/1"
    _add_version(owner, "p", make_default=False)
    fetched = owner.get_pipeline("p")
    assert fetched.default_version == "pipelines/p/versions/1"
    assert fetched.latest_version_number == 2
    owner.set_default_version("p", 2)
    assert owner.get_pipeline("p").default_version == "pipelines/p/versions/2"
    owner.set_default_version("p", 1)
    assert owner.get_pipeline("p").default_version == "pipelines/p/versions/1"
    etag = owner.get_pipeline("p").etag
    owner.delete_pipeline("p", force=False)
    with pytest.raises(NotFoundError):
        owner.get_pipeline("p")
    add_pipeline(owner, "p", team="b")
    again = owner.get_pipeline("p")
    assert again.default_version == ""
    assert dict(again.labels) == {"team": "b"}
    assert again.latest_version_number == 0
    assert again.etag != etag


def test_a_cached_pipeline_cannot_be_changed_by_its_reader(owner: SqlRepository) -> None:
    add_pipeline(owner, "p")
    owner.get_pipeline("p")  # read from the database, and cached
    first = owner.get_pipeline("p")  # from the cache
    first.display_name = "changed by a caller"
    first.labels["x"] = "y"
    assert owner.get_pipeline("p") == owner.get_pipeline("p")
    assert owner.get_pipeline("p").display_name == "P"
    assert "x" not in owner.get_pipeline("p").labels


def test_a_read_that_overlaps_a_write_does_not_cache_the_old_row(
    owner: SqlRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race a cache must survive, made deterministic: a reader fetches the row, a write
    commits and returns, and only then does the reader get to store what it fetched."""
    add_pipeline(owner, "p")
    _add_version(owner, "p")
    fetched = threading.Event()
    written = threading.Event()
    lookup = owner._get_pipeline

    def slow_lookup(params: Any) -> Any:
        row = lookup(params)
        if threading.current_thread().name == "reader":
            fetched.set()
            assert written.wait(30)
        return row

    monkeypatch.setattr(owner, "_get_pipeline", slow_lookup)
    seen: list[str] = []
    reader = threading.Thread(
        target=lambda: seen.append(owner.get_pipeline("p").default_version), name="reader"
    )
    reader.start()
    assert fetched.wait(30)
    _add_version(owner, "p")  # commits version 2 as the default while the reader holds v1
    written.set()
    reader.join(30)
    assert seen == ["pipelines/p/versions/1"]  # what it read before the write: fine
    assert owner.get_pipeline("p").default_version == "pipelines/p/versions/2"


def test_many_threads_never_see_a_pipeline_older_than_the_last_write(
    owner: SqlRepository,
) -> None:
    """A writer flips the default between two versions; every read that starts after a flip
    has returned sees that flip or a later one."""
    add_pipeline(owner, "p")
    _add_version(owner, "p")
    _add_version(owner, "p")
    committed = [owner.get_pipeline("p").etag]  # each write's etag, in commit order
    lock = threading.Lock()
    done = threading.Event()
    reads: list[tuple[int, str]] = []  # (writes returned before the read began, etag read)

    def reader() -> None:
        while not done.is_set():
            with lock:
                floor = len(committed) - 1
            reads.append((floor, owner.get_pipeline("p").etag))

    readers = [threading.Thread(target=reader) for _ in range(3)]
    for t in readers:
        t.start()
    for i in range(100):
        etag = owner.set_default_version("p", 1 + i % 2).etag
        with lock:
            committed.append(etag)
    done.set()
    for t in readers:
        t.join()
    order = {etag: index for index, etag in enumerate(committed)}
    assert len(order) == len(committed), "every write has its own etag"
    stale = [(floor, order[etag]) for floor, etag in reads if order[etag] < floor]
    assert not stale, stale[:5]
    assert len(reads) > 100
    assert owner.get_pipeline("p").etag == committed[-1]
