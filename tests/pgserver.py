"""A real, throw-away PostgreSQL server for tests: Debian's `postgresql` package, a private cluster
in a temporary directory, on a free port of 127.0.0.1, stopped at the end.

    with start_postgres() as pg:                      # or: pg = start_postgres(); ...; pg.stop()
        pg.create_database("airflow", owner="airflow", password="airflow")
        url = pg.url("airflow", "airflow", "airflow")  # postgresql+psycopg2://airflow:airflow@127.0.0.1:PORT/airflow

The session fixture `postgres_server` gives such a server, with a user `airflow` (password `airflow`)
owning a database `airflow`. Tests that need their own database call `create_database`.

The binaries are the highest version under /usr/lib/postgresql/*/bin (`apt-get install postgresql`).
initdb refuses to run as root: as root, the cluster directory belongs to the `postgres` system user
(created by the Debian package) and initdb / pg_ctl run as that user through `runuser`; otherwise
they run as the current user. Authentication is `trust` (the server only listens on 127.0.0.1 and on
a Unix socket inside the temporary directory); passwords are set anyway, so URLs look like real ones.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest

PG_LIB = Path("/usr/lib/postgresql")
SERVICE_USER = "postgres"
SUPERUSER = "postgres"
INSTALL_HINT = ("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: "
                "install Debian's server package with `apt-get install -y postgresql`")


class PostgresNotInstalled(RuntimeError):
    """No server binaries (initdb, pg_ctl) under /usr/lib/postgresql/*/bin."""


def find_pg_bin() -> Path:
    """The bin directory of the highest installed PostgreSQL major version."""
    found = []
    for d in glob.glob(str(PG_LIB / "*" / "bin")):
        version = Path(d).parent.name
        if re.fullmatch(r"\d+(\.\d+)?", version) and all(os.access(Path(d, b), os.X_OK)
                                                          for b in ("initdb", "pg_ctl", "postgres")):
            found.append((tuple(int(p) for p in version.split(".")), Path(d)))
    if not found:
        raise PostgresNotInstalled(INSTALL_HINT)
    return max(found)[1]


def free_port() -> int:
    """A port of 127.0.0.1 that nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PgServer:
    """A running private cluster. `stop()` is idempotent and also runs at interpreter exit."""

    bin_dir: Path
    base_dir: Path          # holds data/, the Unix socket and server.log
    port: int
    host: str = "127.0.0.1"
    run_as: str | None = None   # the system user running the server (None: the current user)
    remove_base_dir: bool = False
    _running: bool = field(default=False, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base_dir

    @property
    def log_file(self) -> Path:
        return self.base_dir / "server.log"

    @property
    def version(self) -> str:
        return self.bin_dir.parent.name

    def url(self, db: str, user: str, password: str | None = None, driver: str = "postgresql+psycopg2") -> str:
        """A SQLAlchemy-style URL on 127.0.0.1:port, e.g. for AIRFLOW__DATABASE__SQL_ALCHEMY_CONN."""
        cred = quote(user, safe="") + (f":{quote(password, safe='')}" if password is not None else "")
        return f"{driver}://{cred}@{self.host}:{self.port}/{quote(db, safe='')}"

    def connect(self, db: str = "postgres", user: str = SUPERUSER, password: str | None = None,
                autocommit: bool = True):
        """A psycopg2 connection (TCP, 127.0.0.1)."""
        import psycopg2

        con = psycopg2.connect(host=self.host, port=self.port, dbname=db, user=user, password=password,
                               connect_timeout=10)
        con.autocommit = autocommit
        return con

    def query(self, sql: str, params=None, db: str = "postgres", user: str = SUPERUSER) -> list[tuple]:
        """Rows of one statement, run as `user` (superuser by default) in `db`."""
        con = self.connect(db, user)
        try:
            with con.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall() if cur.description else []
        finally:
            con.close()

    def create_user(self, name: str, password: str | None = None, *, superuser: bool = False) -> None:
        """A login role (no-op if it exists)."""
        from psycopg2 import sql

        con = self.connect()
        try:
            with con.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,))
                if cur.fetchone():
                    return
                stmt = sql.SQL("CREATE ROLE {} LOGIN" + (" SUPERUSER" if superuser else "")).format(
                    sql.Identifier(name))
                if password is not None:
                    stmt = stmt + sql.SQL(" PASSWORD {}").format(sql.Literal(password))
                cur.execute(stmt)
        finally:
            con.close()

    def create_database(self, name: str, owner: str = SUPERUSER, password: str | None = None) -> str:
        """Database `name` owned by `owner` (the role is created first if missing, with `password`).
        Returns its URL as the owner."""
        from psycopg2 import sql

        if owner != SUPERUSER:
            self.create_user(owner, password)
        con = self.connect()
        try:
            with con.cursor() as cur:
                cur.execute(sql.SQL("CREATE DATABASE {} OWNER {} ENCODING 'UTF8' TEMPLATE template0").format(
                    sql.Identifier(name), sql.Identifier(owner)))
        finally:
            con.close()
        return self.url(name, owner, password)

    def stop(self) -> None:
        """`pg_ctl -m fast stop` (then `-m immediate` if that fails); removes the temporary directory
        if start_postgres created it."""
        if self._running:
            self._running = False
            stop = [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-w", "-t", "60"]
            proc = _run(stop + ["-m", "fast", "stop"], self.run_as, self.base_dir, check=False)
            if proc.returncode != 0 and (self.data_dir / "postmaster.pid").exists():
                _run(stop + ["-m", "immediate", "stop"], self.run_as, self.base_dir, check=False)
        if self.remove_base_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.remove_base_dir = False

    def __enter__(self) -> PgServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _as_user(cmd: list[str], user: str | None) -> list[str]:
    return ["runuser", "-u", user, "--", *cmd] if user else cmd


def _run(cmd: list[str], user: str | None, cwd: Path, check: bool = True, timeout: float = 120):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    proc = subprocess.run(_as_user(cmd, user), cwd=cwd, env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(_as_user(cmd, user))} failed (exit {proc.returncode}):\n"
                           f"{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return proc


def start_postgres(tmp_dir: str | os.PathLike | None = None, *, attempts: int = 3) -> PgServer:
    """Initialise and start a private cluster; returns the running PgServer (a context manager).

    `tmp_dir`: an empty or missing directory for the cluster (kept at stop); None: a new directory
    under the system temp dir (removed at stop). As root, the directory must be reachable by the
    `postgres` user: a missing x bit for others on its parents is added.
    """
    bin_dir = find_pg_bin()
    run_as = None
    if os.geteuid() == 0:
        try:
            pw = pwd.getpwnam(SERVICE_USER)
        except KeyError:
            raise PostgresNotInstalled(f"running as root but there is no `{SERVICE_USER}` system user: "
                                       "install Debian's server package with `apt-get install -y postgresql`")
        run_as = SERVICE_USER
    if tmp_dir is None:
        base = Path(tempfile.mkdtemp(prefix="snds_pg_"))
        remove = True
    else:
        base = Path(tmp_dir).resolve()
        base.mkdir(parents=True, exist_ok=True)
        remove = False
    try:
        if run_as:
            os.chown(base, pw.pw_uid, pw.pw_gid)
            os.chmod(base, 0o700)
            for parent in base.parents:  # e.g. pytest's /tmp/pytest-of-root (0700)
                mode = os.stat(parent).st_mode
                if not mode & 0o001:
                    os.chmod(parent, mode | 0o001)
        # The Unix socket path must stay under ~107 bytes.
        if len(str(base / ".s.PGSQL.65535.lock")) > 100:
            raise RuntimeError(f"{base}: path too long for the server's Unix socket; use a shorter tmp_dir")
        server = PgServer(bin_dir=bin_dir, base_dir=base, port=0, run_as=run_as, remove_base_dir=remove)
        _run([str(bin_dir / "initdb"), "-D", str(server.data_dir), "-U", SUPERUSER, "--auth=trust",
              "-E", "UTF8", "--no-locale", "--no-sync"], run_as, base)
        last_error = None
        for _ in range(attempts):  # the free port may be taken between the probe and the start
            server.port = free_port()
            opts = (f"-p {server.port} -k {server.socket_dir} -c listen_addresses=127.0.0.1 "
                    "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
            proc = _run([str(bin_dir / "pg_ctl"), "-D", str(server.data_dir), "-l", str(server.log_file),
                         "-w", "-t", "60", "-o", opts, "start"], run_as, base, check=False)
            if proc.returncode == 0:
                server._running = True
                break
            log = server.log_file.read_text(errors="replace")[-3000:] if server.log_file.exists() else ""
            last_error = f"pg_ctl start failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}\n{log}"
            if (server.data_dir / "postmaster.pid").exists():  # started but not ready in time
                server._running, server.remove_base_dir = True, False
                server.stop()
                server.remove_base_dir = remove
            if "already in use" not in log:
                break
        if not server._running:
            raise RuntimeError(last_error)
    except BaseException:
        if remove:
            shutil.rmtree(base, ignore_errors=True)
        raise
    atexit.register(server.stop)
    _wait_ready(server)
    return server


def _wait_ready(server: PgServer, timeout: float = 30) -> None:
    import psycopg2

    deadline = time.monotonic() + timeout
    while True:
        try:
            server.connect().close()
            return
        except psycopg2.OperationalError:
            if time.monotonic() > deadline:
                server.stop()
                raise
            time.sleep(0.1)


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server for the test session, with user `airflow` (password `airflow`) owning
    database `airflow`. Not installed: the test fails under CI (env var CI) or as root, else skips."""
    try:
        server, missing = start_postgres(), None
    except PostgresNotInstalled as e:
        server, missing = None, str(e)
    if missing:
        if os.environ.get("CI") or os.geteuid() == 0:
            pytest.fail(missing, pytrace=False)
        pytest.skip(missing)
    try:
        server.create_database("airflow", owner="airflow", password="airflow")
        yield server
    finally:
        server.stop()
