"""The daemon's CRM collaborator: per [[crm]] a thread that pushes what the outbox has new
(looked at every ``PUSH_EVERY`` seconds, so a record is in the CRM within about a second of
its capture) and pulls the directory and the tasks every ``interval``.  A CRM that is down
holds only its own thread: capture and the webhooks never wait for it."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time

from sqlalchemy import Engine

from syncd.config import Config, CrmConfig
from syncd.crm.base import Crm
from syncd.crm.bottlecrm import BottleCrm
from syncd.crm.sink import CrmSink
from syncd.errors import SyncdError, describe
from syncd.logs import get_logger
from syncd.store import crm_queue
from syncd.store.directory import installation_secret

log = get_logger("syncd.crm")

PUSH_EVERY = 0.3  # seconds between looks at the outbox


def open_crm(config: CrmConfig) -> Crm:
    """The connector of ``config.kind`` (one module per CRM)."""
    return BottleCrm.open(config)


def open_sink(engine: Engine, config: CrmConfig, daemon_id: str) -> CrmSink:
    with engine.begin() as conn:
        crm_queue.ensure(conn, [config.name])
        # The copies' marker names the installation by a keyed digest, never the key itself.
        tag = hmac.new(installation_secret(conn), b"crm-marker", hashlib.sha256).hexdigest()[:16]
    return CrmSink(engine, config, open_crm(config), daemon_id, tag)


class CrmWorker:
    def __init__(self, engine: Engine, config: CrmConfig, daemon_id: str) -> None:
        self.engine = engine
        self.config = config
        self.daemon_id = daemon_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"crm-{config.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 0.0) -> None:
        self._stop.set()
        if timeout:
            self._thread.join(timeout)

    def _loop(self) -> None:
        sink: CrmSink | None = None
        next_pull = 0.0
        while not self._stop.is_set():
            try:
                if sink is None:
                    sink = open_sink(self.engine, self.config, self.daemon_id)
                if time.monotonic() >= next_pull:
                    next_pull = time.monotonic() + self.config.interval
                    if self.config.directory:
                        sink.pull_directory()
                    if "tasks" in self.config.push:
                        sink.pull_tasks()
                sink.push(rounds=20)
            except SyncdError as err:
                log.warning("crm.failed", crm=self.config.name, error=describe(err))
                with self.engine.begin() as conn:
                    crm_queue.note_error(conn, self.config.name, describe(err))
                self._stop.wait(min(30.0, self.config.interval))
            except Exception as err:  # the database may be down: the next round tries again
                log.warning("crm.failed", crm=self.config.name, error=type(err).__name__)
                self._stop.wait(5.0)
            self._stop.wait(PUSH_EVERY)
        if sink is not None:
            sink.crm.close()


class CrmWorkers:
    """One worker per [[crm]]; ``follow`` keeps unchanged ones across a reload."""

    def __init__(self) -> None:
        self.workers: dict[str, CrmWorker] = {}

    @classmethod
    def follow(
        cls, current: CrmWorkers | None, engine: Engine, config: Config, daemon_id: str
    ) -> CrmWorkers | None:
        if current is None and not config.crm:
            return None
        out = current or cls()
        wanted = {c.name: c for c in config.crm}
        for name, worker in list(out.workers.items()):
            if wanted.get(name) != worker.config:
                worker.stop()
                del out.workers[name]
        for name, crm in wanted.items():
            if name not in out.workers:
                out.workers[name] = CrmWorker(engine, crm, daemon_id)
                out.workers[name].start()
        return out

    def stop(self, timeout: float) -> None:
        for worker in self.workers.values():
            worker.stop()
        deadline = time.monotonic() + timeout
        for worker in self.workers.values():
            worker._thread.join(max(0.0, deadline - time.monotonic()))
