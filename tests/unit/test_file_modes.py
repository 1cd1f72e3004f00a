"""What the server creates on disk is its user's only: the data directory 0700, the SQLite
database (and its WAL files) 0600, token files 0600 (test_auth checks those)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from control_plane.server import ControlPlane, ServerConfig


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_new_data_directory_and_database_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)  # the usual umask, which would leave both readable by all
    try:
        plane = ControlPlane(ServerConfig(data_dir=tmp_path / "fresh", port=0, enable_runs=False))
        plane.start()
        try:
            assert mode(tmp_path / "fresh") == 0o700
            database = tmp_path / "fresh" / "raypipe.db"
            assert mode(database) == 0o600
            for journal in database.parent.glob("raypipe.db-*"):
                assert mode(journal) == 0o600, journal
        finally:
            plane.stop(grace=1)
    finally:
        os.umask(old)
