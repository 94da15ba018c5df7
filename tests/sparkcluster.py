"""A real Spark standalone cluster on this machine, for tests: one master and N workers on loopback.

    cluster = start_standalone_cluster(tmp_dir)        # master + 2 single-core workers, ALIVE
    ...  spark-submit --master cluster.master_url ...
    cluster.stop()

or, in a test, the session-scoped fixture `spark_standalone` (made visible to every test module by
`from sparkcluster import spark_standalone  # noqa: F401` in tests/conftest.py; tests/ is on sys.path).

The daemons are started with the installed pyspark's own launcher,
`$SPARK_HOME/bin/spark-class org.apache.spark.deploy.master.Master|...worker.Worker`, where SPARK_HOME
is the pyspark package directory. Every port (master RPC, master web UI, each worker's RPC and web UI)
is a free loopback port picked by binding 127.0.0.1:0, so several clusters (or other Spark tests)
can run side by side. Logs (`master.log`, `worker-N.log`) and the workers' work directories
(`worker-N/`, holding each application's executors' stdout/stderr and fetched --py-files) are under
`work_dir`.

Each daemon is started in its own process group; `stop()` sends SIGTERM to each group (workers
first, then the master), then SIGKILL to whatever is left, including any process that descended from
a daemon and left its group (PySpark's Python worker daemon calls setpgid(0, 0)).

Python tasks: executors run the Python named by the *driver's* PYSPARK_PYTHON (or
spark.pyspark.python; default "python3"), so whoever submits against this cluster must set
PYSPARK_PYTHON=sys.executable too (and SPARK_LOCAL_IP=127.0.0.1): `SparkCluster.submit_env()` does.
The daemons' environment also has PYSPARK_PYTHON=sys.executable and this venv's bin/ first on PATH,
so a bare "python3" from a driver that set nothing still resolves to the venv's interpreter.
PYTHONPATH is removed from the daemons' environment: executors inherit the worker's environment,
and code must reach them through --py-files, not through this process's path.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"


# Master and workers are small, short-lived JVMs on a small machine: the C1 compiler only and the
# serial GC cost less CPU than the defaults (C2 + G1 with its threads).
DAEMON_JAVA_OPTS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


class SparkClusterError(RuntimeError):
    pass


def spark_home() -> Path:
    """The pyspark package directory: it holds bin/spark-class and jars/."""
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def _java_home() -> str | None:
    try:
        from snds_operators.localrun import java_home
    except ImportError:  # plugins/ not on the path: same rule, inline
        if os.environ.get("JAVA_HOME"):
            return os.environ["JAVA_HOME"]
        java = shutil.which("java")
        return str(Path(os.path.realpath(java)).parent.parent) if java else None
    return java_home()


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (all sockets held open until every port is picked)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError as e:
        return f"    (cannot read {path}: {e})"
    return "\n".join("    " + line for line in text[-lines:])


# --- process bookkeeping (Linux /proc) -------------------------------------------------------


def _proc_stat(pid: int) -> tuple[int, int] | None:
    """(ppid, start time) of a live process, None if gone or a zombie."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) "
    if fields[0] == "Z":
        return None
    return int(fields[1]), int(fields[19])


def _descendants(root_pids: set[int]) -> dict[int, int]:
    """{pid: start time} of every live descendant of root_pids (not the roots themselves)."""
    children: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        st = _proc_stat(int(entry))
        if st:
            children.setdefault(st[0], []).append(int(entry))
            starts[int(entry)] = st[1]
    found: dict[int, int] = {}
    todo = list(root_pids)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found[child] = starts[child]
                todo.append(child)
    return found


def _signal_strays(strays: dict[int, int], sig: int) -> None:
    """Send `sig` to each stray (pid -> start time) that is still the same process."""
    for pid, start in strays.items():
        if _same_process_alive(pid, start):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass


def _same_process_alive(pid: int, start: int) -> bool:
    st = _proc_stat(pid)
    return st is not None and st[1] == start


@dataclass
class _Daemon:
    name: str
    proc: subprocess.Popen
    log: Path
    rpc_port: int
    webui_port: int


@dataclass
class SparkCluster:
    master_url: str
    web_ui_url: str
    work_dir: Path
    env: dict[str, str]
    master: _Daemon
    workers: list[_Daemon] = field(default_factory=list)
    startup_seconds: float = 0.0
    _stopped: bool = False

    # --- status ---------------------------------------------------------------------------

    def status(self, timeout: float = 5.0) -> dict:
        """The master's JSON status (workers, activeapps, completedapps, cores, ...)."""
        with urllib.request.urlopen(f"{self.web_ui_url}/json/", timeout=timeout) as resp:
            return json.loads(resp.read())

    def worker_status(self, index: int, timeout: float = 5.0) -> dict:
        """A worker's JSON status (executors, finishedexecutors, ...)."""
        url = f"http://127.0.0.1:{self.workers[index].webui_port}/json/"
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return json.loads(resp.read())

    def worker_count(self) -> int:
        """Number of workers the master sees ALIVE."""
        return sum(1 for w in self.status().get("workers", []) if w.get("state") == "ALIVE")

    def logs_tail(self, lines: int = 30) -> str:
        parts = []
        for d in [self.master, *self.workers]:
            rc = d.proc.poll()
            state = "running" if rc is None else f"exited rc={rc}"
            parts.append(f"--- {d.name} (pid {d.proc.pid}, {state}) {d.log}:\n{_tail(d.log, lines)}")
        return "\n".join(parts)

    def submit_env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """An environment for `spark-submit --master self.master_url` from this machine."""
        env = dict(os.environ if base is None else base)
        for key in ("SPARK_HOME", "JAVA_HOME", "SPARK_LOCAL_IP", "PYSPARK_PYTHON"):
            env[key] = self.env[key]
        env["PYSPARK_DRIVER_PYTHON"] = sys.executable
        return env

    def submit_conf(self, executor_memory: str = "1g") -> dict[str, str]:
        """--conf settings for a client-mode application on this cluster (one 1-core executor per worker)."""
        return {
            "spark.executor.memory": executor_memory,
            "spark.executor.cores": "1",
            "spark.cores.max": str(len(self.workers)),
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.ui.enabled": "false",
            "spark.driver.extraJavaOptions": DAEMON_JAVA_OPTS,
            "spark.executor.extraJavaOptions": DAEMON_JAVA_OPTS,
            # Start jobs only once every executor has registered (else the first tasks go to one).
            "spark.scheduler.minRegisteredResourcesRatio": "1.0",
            "spark.scheduler.maxRegisteredResourcesWaitingTime": "30s",
        }

    # --- lifecycle ------------------------------------------------------------------------

    def wait_alive(self, workers: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            for d in [self.master, *self.workers]:
                if d.proc.poll() is not None:
                    raise SparkClusterError(
                        f"Spark {d.name} exited (rc={d.proc.returncode}) during start-up\n{self.logs_tail()}"
                    )
            try:
                status = self.status(timeout=2.0)
                alive = [w for w in status.get("workers", []) if w.get("state") == "ALIVE"]
                last = f"master status={status.get('status')}, {len(alive)} ALIVE worker(s)"
                if status.get("status") == "ALIVE" and len(alive) >= workers:
                    return
            except (urllib.error.URLError, OSError, ValueError) as e:
                last = f"{self.web_ui_url}/json/: {e}"
            time.sleep(0.25)
        raise SparkClusterError(
            f"Spark standalone cluster not ready after {timeout:.0f} s ({last}; wanted {workers} ALIVE workers)\n"
            f"{self.logs_tail()}"
        )

    def stop(self, grace: float = 10.0) -> None:
        """Stop workers then master: SIGTERM to each process group, SIGKILL after `grace` s. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        daemons = [*self.workers, self.master]
        # Everything started under the daemons, recorded now: executors stay in the worker's group,
        # PySpark's Python daemon makes its own group.
        strays = _descendants({d.proc.pid for d in daemons})
        for group in (self.workers, [self.master]):
            for d in group:
                _signal_group(d.proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            for d in group:
                try:
                    d.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
                _signal_group(d.proc.pid, signal.SIGKILL)  # whatever is left in the group
                try:
                    d.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
        # Descendants that left the daemons' groups (or outlived them): by pid, if still the same process.
        _signal_strays(strays, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(_same_process_alive(p, s) for p, s in strays.items()):
            time.sleep(0.1)
        _signal_strays(strays, signal.SIGKILL)
        _LIVE.discard(self)
        left = [d.name for d in daemons if d.proc.poll() is None]
        left += [f"pid {p}" for p, s in strays.items() if _same_process_alive(p, s)]
        if left:
            raise SparkClusterError(f"Spark processes still running after SIGKILL: {left}")

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


_LIVE: set[SparkCluster] = set()


@atexit.register
def _stop_leftovers() -> None:  # safety net if a caller forgot stop() (or Ctrl-C between start and yield)
    for cluster in list(_LIVE):
        try:
            cluster.stop(grace=5)
        except Exception:
            pass


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the launching thread dies (even if it is SIGKILLed).

    spark-class execs java, so the JVM keeps this setting; executors watch their worker and exit with it.
    """
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _launch(name: str, args: list[str], env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen:
    spark_class = Path(env["SPARK_HOME"]) / "bin" / "spark-class"
    if not os.access(spark_class, os.X_OK):  # fall back on the venv's copy
        spark_class = Path(sys.executable).parent / "spark-class"
    with open(log, "wb") as out:
        # spark-class execs java, so the pid is the JVM's; start_new_session makes it a group leader.
        return subprocess.Popen(
            [str(spark_class), *args], env=env, cwd=cwd, stdin=subprocess.DEVNULL,
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )


def start_standalone_cluster(
    work_dir: Path,
    workers: int = 2,
    cores_per_worker: int = 1,
    worker_memory: str = "2g",
    timeout: float = 60.0,
    daemon_java_opts: str = DAEMON_JAVA_OPTS,
) -> SparkCluster:
    """Start a master and `workers` workers on loopback; return once the master sees them ALIVE.

    `daemon_java_opts` are added to SPARK_DAEMON_JAVA_OPTS (master and workers only; executors take
    spark.executor.extraJavaOptions from the application).
    """
    t0 = time.monotonic()
    work_dir = Path(work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    conf_dir = work_dir / "conf"  # empty: no spark-env.sh / spark-defaults.conf from anywhere else
    conf_dir.mkdir(exist_ok=True)

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SPARK_ENV_LOADED", "SPARK_CONF_DIR")}
    env["SPARK_HOME"] = str(spark_home())
    jh = _java_home()
    if not jh:
        raise SparkClusterError("no JAVA_HOME and no `java` on PATH: Spark needs Java 17+")
    env["JAVA_HOME"] = jh
    env["SPARK_CONF_DIR"] = str(conf_dir)
    env["SPARK_LOCAL_IP"] = "127.0.0.1"
    env["SPARK_MASTER_HOST"] = "127.0.0.1"
    env["SPARK_PUBLIC_DNS"] = "127.0.0.1"  # URLs in the UI/JSON use it
    env["SPARK_LOG_DIR"] = str(work_dir)
    env["SPARK_WORKER_DIR"] = str(work_dir / "work")
    env["PYSPARK_PYTHON"] = sys.executable
    env.setdefault("SPARK_DAEMON_MEMORY", "512m")
    env["SPARK_DAEMON_JAVA_OPTS"] = " ".join(filter(None, [env.get("SPARK_DAEMON_JAVA_OPTS"), daemon_java_opts]))
    # No REST submission server: it would listen on the fixed port 6066 (then 6067, ...).
    env["SPARK_MASTER_OPTS"] = " ".join(filter(None, [env.get("SPARK_MASTER_OPTS"), "-Dspark.master.rest.enabled=false"]))
    # venv bin first, so `python`/`spark-*` resolve to this interpreter's.
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")

    ports = free_ports(2 + 2 * workers)
    master_port, master_ui = ports[0], ports[1]
    master_url = f"spark://127.0.0.1:{master_port}"
    master = _Daemon(
        "master",
        _launch(
            "master",
            [MASTER_CLASS, "--host", "127.0.0.1", "--port", str(master_port), "--webui-port", str(master_ui)],
            env, work_dir / "master.log", work_dir,
        ),
        work_dir / "master.log", master_port, master_ui,
    )
    cluster = SparkCluster(master_url, f"http://127.0.0.1:{master_ui}", work_dir, env, master)
    _LIVE.add(cluster)
    try:
        for i in range(workers):
            rpc, ui = ports[2 + 2 * i], ports[3 + 2 * i]
            wdir = work_dir / f"worker-{i}"
            wdir.mkdir(exist_ok=True)
            log = work_dir / f"worker-{i}.log"
            proc = _launch(
                f"worker-{i}",
                [WORKER_CLASS, "--host", "127.0.0.1", "--port", str(rpc), "--webui-port", str(ui),
                 "--cores", str(cores_per_worker), "--memory", worker_memory, "--work-dir", str(wdir), master_url],
                env, log, work_dir,
            )
            cluster.workers.append(_Daemon(f"worker-{i}", proc, log, rpc, ui))
        cluster.wait_alive(workers, timeout=timeout)
    except BaseException:
        cluster.stop(grace=5)
        raise
    cluster.startup_seconds = time.monotonic() - t0
    return cluster


@pytest.fixture(scope="session")
def spark_standalone(tmp_path_factory):
    """A Spark standalone cluster (master + 2 single-core workers, 2g each) for the test session.

    Submit with `spark-submit --master cluster.master_url` and `env=cluster.submit_env()`
    (SPARK_LOCAL_IP=127.0.0.1, PYSPARK_PYTHON=sys.executable); keep spark.executor.memory <= 2g.
    """
    cluster = start_standalone_cluster(tmp_path_factory.mktemp("spark-standalone"))
    print(f"\n[spark_standalone] {cluster.master_url} (UI {cluster.web_ui_url}) "
          f"up in {cluster.startup_seconds:.1f} s", flush=True)
    try:
        yield cluster
    finally:
        cluster.stop()
