"""What the daemon runs beside its syncs, each on its own threads: the metrics listener
(/metrics, /healthz), the HTTP API ([api]), the webhook deliverer ([[webhook]]), the CRM
workers ([[crm]]) and the watcher of the [directory] source.

The loop starts the listeners once, has the others follow the config at start and on every
SIGHUP, and stops each at its place in the stop.  None of them calls the loop: the
directory watcher's change drops the cached directory (``on_directory_change``), the
deliverer yields to the capture through the shared ``Backlog``.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine

from syncd.api.service import ApiService
from syncd.config import Config
from syncd.crm.runner import CrmWorkers
from syncd.engine.backlog import Backlog
from syncd.engine.directory_sync import DirectoryWatcher
from syncd.logs import get_logger
from syncd.metrics import Metrics, MetricsServer
from syncd.webhooks.deliverer import Deliverer

log = get_logger("syncd.daemon")


class Services:
    def __init__(
        self,
        daemon_id: str,
        metrics: Metrics,
        backlog: Backlog,
        *,
        alone: bool,
        on_directory_change: Callable[[], None],
    ) -> None:
        self._id = daemon_id
        self._metrics = metrics
        self._backlog = backlog
        self._alone = alone  # SQLite's lock file: no other daemon delivers from this database
        self._on_directory_change = on_directory_change
        self._server: MetricsServer | None = None
        self._api = ApiService()
        self._directory: DirectoryWatcher | None = None
        self._webhooks: Deliverer | None = None  # started with the first [[webhook]]
        self._crms: CrmWorkers | None = None  # started with the first [[crm]]

    def listen(self, config: Config, healthy: Callable[[], bool]) -> None:
        """The listeners, once (a change of [metrics] needs a restart)."""
        if config.metrics.listen:
            self._server = MetricsServer(config.metrics.address, self._metrics, healthy).start()
            log.info("metrics.listening", port=self._server.port)
        self._api.start(config, self._metrics)

    def follow(self, engine: Engine, config: Config) -> None:
        """At start and on every reload: the directory watcher, deliverer and CRM workers
        for ``config`` (each kept when its part of the config is unchanged)."""
        self._directory = DirectoryWatcher.follow(
            self._directory, engine, config, self._metrics, self._on_directory_change
        )
        self._webhooks = Deliverer.follow(
            self._webhooks, config, self._id, self._metrics, self._alone, self._backlog
        )
        self._crms = CrmWorkers.follow(self._crms, engine, config, self._id)

    def stop_directory(self) -> None:
        if self._directory is not None:
            self._directory.stop()

    def stop_delivery(self, timeout: float) -> None:
        if self._webhooks is not None:  # requests in flight go again later (at least once)
            self._webhooks.stop(timeout)
        if self._crms is not None:  # a push in flight is found again by its marker
            self._crms.stop(timeout)

    def stop_metrics(self) -> None:
        """The metrics listener, first thing on a stop: a scrape renders every mailbox's
        series holding the GIL, and each thread switch of the steps after it waits on that
        (a fleet's closing hub took 13 s behind a render).  A render in flight finishes on
        its own (daemon) thread; nothing new is accepted."""
        server, self._server = self._server, None
        if server is not None:
            server.stop()

    def stop_listening(self) -> None:
        self.stop_metrics()
        self._api.stop()
