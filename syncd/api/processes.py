"""The API served by several processes on one port ([api] workers, `syncd serve` only), so
that its Python is not held to one core by one GIL.

The parent binds and listens once (no SO_REUSEPORT: the port is its own, as with one
process, and a second `syncd serve` on it fails with "address in use"), then starts
``workers`` children (``python -m syncd.api.processes``, each in a session of its own)
that inherit that listening socket and each serve it (``ApiServer(sock=...)``): every
child accepts from the one queue.  The parent serves nothing itself.  What is per
process, and how it adds up:

- Rate limit: each child allows ``rate_limit / workers`` requests a second per token (one
  connection lands on one child: it gets that child's share), so a client may see 429
  below ``rate_limit``; the 429 says the share applied.
- Connections and requests in progress: ``MAX_CONNECTIONS`` and ``MAX_REQUESTS`` per child;
  database connections: ``POOL_SIZE // workers`` per child (at least ``MIN_POOL``), twice
  that at a peak.
- Metrics: each child sends its API counters and histograms to the parent once a second
  (and at its end); the parent's /metrics shows their sums, as one process would.
- Event long-poll: each child watches the events for its own waiters (one query every
  ``POLL_SECONDS`` per child with a waiter, none while nobody waits).
- Stopping: SIGTERM (or SIGINT) to the parent stops every child gracefully (the children,
  in their own sessions, get no terminal's ^C: the parent passes the stop on), then kills
  any still there after the timeout; ``stop`` says whether every child ended cleanly.  A
  child never outlives its parent: it stops as soon as its stdin (a pipe from the parent)
  ends, which the kernel does when the parent dies, by SIGKILL too.  A child that ends on
  its own ends the service (``alive``).

The config goes to a child over that pipe (pickled), and its reports come back over a pipe
of their own (JSON lines), so nothing the child logs or prints can be taken for them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from prometheus_client.metrics_core import Metric

from syncd.api.server import BACKLOG
from syncd.config import ApiConfig, Config
from syncd.logs import get_logger
from syncd.metrics import Metrics

log = get_logger("syncd.api")

STOP_SECONDS = 8.0  # a child's own stop; its parent kills it after 10 s
REPORT_SECONDS = 1.0  # a child's metrics reach the parent's /metrics this late at most
# The API's metric families, as the children count them and the parent shows them.
API_FAMILIES = ("syncd_api_requests", "syncd_api_request_duration_seconds")


def serve(config: Config, metrics: Metrics | None, workers: int) -> Any:
    """The API started (`syncd serve`): in this process when ``workers`` is 1, else in that
    many children."""
    if workers <= 1:
        from syncd.api.server import ApiServer

        return ApiServer(config, metrics).start()
    return ApiProcesses(config, metrics, workers).start()


class _Merged:
    """The children's API metrics, summed, for the parent's registry (``_created``: the
    earliest)."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._lock = threading.Lock()
        self._kinds = {f.name: (f.type, f.documentation) for f in families}
        self._latest: dict[int, list[Any]] = {}  # child -> [[family, [[sample, labels, value]]]]

    def update(self, child: int, families: list[Any]) -> None:
        with self._lock:
            self._latest[child] = families

    def collect(self) -> Iterator[Metric]:
        sums: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {
            name: {} for name in self._kinds
        }
        with self._lock:
            reports = list(self._latest.values())
        for families in reports:
            for name, samples in families:
                into = sums.get(name)
                if into is None:
                    continue
                for sample, labels, value in samples:
                    key = (sample, tuple(sorted(labels.items())))
                    if sample.endswith("_created"):
                        into[key] = min(into.get(key, value), value)
                    else:
                        into[key] = into.get(key, 0.0) + value
        for name, samples in sums.items():
            kind, documentation = self._kinds[name]
            metric = Metric(name, documentation, kind)
            for (sample, labels), value in sorted(samples.items(), key=_bucket_order):
                metric.add_sample(sample, dict(labels), value)
            yield metric


def _bucket_order(item: tuple[tuple[str, tuple[tuple[str, str], ...]], float]) -> Any:
    """Samples in the order Prometheus writes them: by name, labels, then ``le`` as a number."""
    (sample, labels), _ = item
    le = dict(labels).get("le")
    rest = tuple(pair for pair in labels if pair[0] != "le")
    return (sample, rest, float(le) if le is not None else 0.0)


class _Child:
    def __init__(self, index: int, proc: subprocess.Popen[bytes], reports: IO[bytes]) -> None:
        self.index = index
        self.proc = proc
        self.reports = reports
        self.ready = threading.Event()
        self.ended = threading.Event()  # its report pipe ended: it exited or is exiting


class ApiProcesses:
    """``workers`` processes serving the API on one port; ``start()`` returns once every
    one listens.  The same face as ``ApiServer``: ``url``, ``port``, ``alive``, ``stop``."""

    def __init__(self, config: Config, metrics: Metrics | None, workers: int) -> None:
        self._config = config
        self._workers = workers
        api = config.api or ApiConfig()
        host, port = api.address
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # Listening here, once, exclusively (no SO_REUSEPORT): the children inherit this
        # socket and accept from it; nobody else can bind the port beside it.
        self._socket = socket.create_server((host, port), family=family, backlog=BACKLOG)
        self.port = self._socket.getsockname()[1]
        scheme = "https" if api.tls_cert is not None else "http"
        shown = f"[{host}]" if ":" in host else host
        self.url = f"{scheme}://{shown}:{self.port}"
        self._merged: _Merged | None = None
        if metrics is not None:
            # The registry's own API metrics stay empty here: the children's, summed, instead.
            self._merged = _Merged(
                family
                for collector in (metrics.api_requests, metrics.api_latency)
                for family in collector.describe()
            )
            metrics.registry.unregister(metrics.api_requests)
            metrics.registry.unregister(metrics.api_latency)
            metrics.registry.register(self._merged)
        self._children: list[_Child] = []
        self._stopped = False
        self._clean = True

    def start(self, timeout: float = 60.0) -> ApiProcesses:
        payload = pickle.dumps(
            {
                "config": self._config,
                "fd": self._socket.fileno(),
                "processes": self._workers,
                "metrics": self._merged is not None,
                "level": logging.getLogger().level,
            }
        )
        try:
            for index in range(self._workers):
                self._children.append(self._spawn(index, payload))
            deadline = time.monotonic() + timeout
            for child in self._children:
                while not child.ready.wait(0.05):
                    if child.ended.is_set() or child.proc.poll() is not None:
                        raise OSError(
                            f"API process {child.index} ended at start (exit code "
                            f"{child.proc.wait(5)}): see its log above"
                        )
                    if time.monotonic() > deadline:
                        raise TimeoutError("the API processes did not start")
        except BaseException:
            self.stop()
            raise
        log.info("api.listening", url=self.url, processes=self._workers)
        return self

    def _spawn(self, index: int, payload: bytes) -> _Child:
        read, write = os.pipe()
        try:
            proc = subprocess.Popen(
                # -P: not the working directory first on sys.path (-m puts it there), which
                # ran a syncd/ found there (another checkout's) in the children; the
                # parent's own package root instead, so that both run the same code.
                [sys.executable, "-P", "-m", "syncd.api.processes", str(write)],
                env=_same_code(),
                stdin=subprocess.PIPE,
                pass_fds=(write, self._socket.fileno()),
                # Out of the terminal's process group: a ^C reaches the parent alone, which
                # stops its children itself (a child killed at start-up was an error).
                start_new_session=True,
            )
        except BaseException:
            os.close(read)
            raise
        finally:
            os.close(write)
        reports = os.fdopen(read, "rb")
        child = _Child(index, proc, reports)
        assert proc.stdin is not None
        # Kept open: its end is the child's sign that this process is gone.  A child that
        # died at once (BrokenPipeError) is seen ended by ``start``.
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write(struct.pack(">I", len(payload)) + payload)
            proc.stdin.flush()
        threading.Thread(
            target=self._read, args=(child,), name=f"api-child-{index}", daemon=True
        ).start()
        return child

    def _read(self, child: _Child) -> None:
        try:
            for line in child.reports:
                report = json.loads(line)
                if report.get("ready"):
                    child.ready.set()
                if "metrics" in report and self._merged is not None:
                    self._merged.update(child.index, report["metrics"])
        except (OSError, ValueError) as err:
            log.warning("api.child_report", child=child.index, error=str(err)[:200])
        finally:
            child.ended.set()
            child.reports.close()

    @property
    def alive(self) -> bool:
        return bool(self._children) and all(
            c.proc.poll() is None and not c.ended.is_set() for c in self._children
        )

    @property
    def pids(self) -> list[int]:
        return [c.proc.pid for c in self._children]

    def stop(self, timeout: float = 10.0) -> bool:
        """SIGTERM to every child, each stops gracefully (as ``ApiServer.stop``); any still
        running after ``timeout`` is killed.  Returns once every child has ended: whether
        each exited 0 (an error is logged for any that did not)."""
        if self._stopped:
            return self._clean
        self._stopped = True
        deadline = time.monotonic() + timeout
        for child in self._children:
            with contextlib.suppress(ProcessLookupError):
                child.proc.send_signal(signal.SIGTERM)
        for child in self._children:
            try:
                child.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("api.child_killed", child=child.index)
                child.proc.kill()
                child.proc.wait()
            if child.proc.stdin is not None:
                with contextlib.suppress(OSError):
                    child.proc.stdin.close()
            child.ended.wait(1.0)  # its last metrics read
            code = child.proc.returncode
            if code != 0:
                self._clean = False
                log.error("api.child_failed", child=child.index, pid=child.proc.pid, code=code)
        self._socket.close()
        return self._clean


def _child(report_fd: int) -> int:
    """One of the processes: its config from stdin, the API served until SIGTERM or until
    stdin ends (the parent is gone), its readiness and metrics reported on ``report_fd``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's ^C: the parent stops us
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stopping.set())
    # stdin read from its fd, never through sys.stdin: a daemon thread blocked in a
    # buffered read holds the buffer's lock, and the interpreter's exit aborted on it
    # ("_enter_buffered_busy", SIGABRT).
    head = _read_exactly(0, 4)
    if len(head) < 4:
        return 1  # the parent died before sending the config
    size = struct.unpack(">I", head)[0]
    # Trusted: our parent wrote it, on a pipe nobody else holds.
    setup: dict[str, Any] = pickle.loads(_read_exactly(0, size))  # noqa: S301

    from syncd import logs

    logs.configure(logging.getLevelName(setup["level"]), lazy=True)

    def orphaned() -> None:
        with contextlib.suppress(OSError):
            while os.read(0, 4096):  # b"" at the pipe's end: the parent closed it, or died
                pass
        stopping.set()

    threading.Thread(target=orphaned, name="api-parent", daemon=True).start()
    from syncd.api.server import ApiServer

    metrics = Metrics() if setup["metrics"] else None
    reports = os.fdopen(report_fd, "wb", buffering=0)

    def report(data: dict[str, Any]) -> bool:
        try:
            reports.write(json.dumps(data).encode() + b"\n")
        except OSError:  # the parent is gone
            return False
        return True

    listener = socket.socket(fileno=setup["fd"])  # the parent's, inherited, listening
    server = ApiServer(
        setup["config"], metrics, sock=listener, processes=setup["processes"]
    ).start()
    try:
        report({"ready": True, "pid": os.getpid()})
        while not stopping.wait(REPORT_SECONDS):
            if not server.alive:
                return 1
            if metrics is not None and not report({"metrics": _api_metrics(metrics)}):
                break
    finally:
        server.stop(STOP_SECONDS)
        if metrics is not None:
            report({"metrics": _api_metrics(metrics)})
        with contextlib.suppress(OSError):
            reports.close()
    return 0


def _same_code() -> dict[str, str]:
    """The environment of a child: this process's, with the folder this process's syncd
    package was imported from first on PYTHONPATH, unless it is a site-packages folder
    (installed: the child finds it there too; on PYTHONPATH it would come before the
    standard library)."""
    import site

    root = str(Path(__file__).resolve().parents[2])  # <root>/syncd/api/processes.py
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    installed = {str(Path(p).resolve()) for p in site.getsitepackages()}
    if root not in installed:
        paths.insert(0, root)
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)} if paths else dict(os.environ)


def _read_exactly(fd: int, size: int) -> bytes:
    """``size`` bytes from ``fd``, fewer at its end."""
    chunks: list[bytes] = []
    left = size
    while left:
        chunk = os.read(fd, left)
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _api_metrics(metrics: Metrics) -> list[Any]:
    return [
        [family.name, [[s.name, s.labels, s.value] for s in family.samples]]
        for family in metrics.registry.collect()
        if family.name in API_FAMILIES
    ]


if __name__ == "__main__":
    raise SystemExit(_child(int(sys.argv[1])))
