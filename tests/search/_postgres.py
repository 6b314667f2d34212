"""A real PostgreSQL server for the tests: the one named by SLIMKIT_TEST_POSTGRES (CI starts it), or a
throwaway one started here from the installed binaries (Debian's postgresql package)."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest


def _binaries() -> str | None:
    # The real folder (not /usr/local/bin's symlinks to a few of its programs): pg_isready is beside initdb.
    which = shutil.which("pg_ctl")
    found = [os.path.dirname(os.path.realpath(which))] if which else []
    for folder in [*found, *sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]:
        if os.path.isfile(os.path.join(folder, "initdb")) and os.path.isfile(os.path.join(folder, "pg_isready")):
            return folder
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """A SQLAlchemy URL of a running PostgreSQL server with an empty database."""
    pytest.importorskip("psycopg")
    if os.environ.get("SLIMKIT_TEST_POSTGRES"):
        yield os.environ["SLIMKIT_TEST_POSTGRES"]
        return
    bin_dir = _binaries()
    if bin_dir is None:
        pytest.skip("no PostgreSQL here (apt-get install postgresql, or set SLIMKIT_TEST_POSTGRES)")
    # PostgreSQL refuses to run as root: as root, the server runs as the 'postgres' user, in a folder
    # it can reach (pytest's tmp folders are private to root).
    as_user: list[str] = []
    folder = tempfile.mkdtemp(prefix="slimkit-pg-")
    os.chmod(folder, 0o755)
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start PostgreSQL as another user")
        shutil.chown(folder, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = os.path.join(folder, "data"), _free_port()
    run = {"check": True, "capture_output": True, "text": True}
    try:
        subprocess.run([*as_user, f"{bin_dir}/initdb", "-D", data, "-A", "trust", "-U", "slimkit"], **run)
        subprocess.run([*as_user, f"{bin_dir}/pg_ctl", "-D", data, "-w", "-l", os.path.join(folder, "log"),
                        "-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start"], **run)
        deadline = time.time() + 30
        while subprocess.run([f"{bin_dir}/pg_isready", "-h", "127.0.0.1", "-p", str(port)],
                             capture_output=True).returncode != 0:
            if time.time() > deadline:
                raise RuntimeError("PostgreSQL did not start within 30 s")
            time.sleep(0.2)
        yield f"postgresql+psycopg://slimkit@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, f"{bin_dir}/pg_ctl", "-D", data, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)
