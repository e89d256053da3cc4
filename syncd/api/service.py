"""The API inside ``syncd run``: started beside capture when the config has [api], stopped
with the daemon.  A failure to serve is logged and capture goes on without it."""

from __future__ import annotations

from syncd.config import Config
from syncd.logs import get_logger
from syncd.metrics import Metrics

log = get_logger("syncd.api")


class ApiService:
    def __init__(self) -> None:
        self._server: object | None = None

    def start(self, config: Config, metrics: Metrics) -> None:
        if config.api is None:
            return
        # Imported here: a daemon without [api] never loads FastAPI or uvicorn.
        from syncd.api.server import ApiServer

        if config.api.workers > 1:  # refused by `syncd run` before it starts (cli/cmd_run.py)
            log.warning("api.workers_ignored", workers=config.api.workers)
        try:
            self._server = ApiServer(config, metrics).start()
        except (OSError, TimeoutError) as err:  # the port is taken, the certificate unreadable
            log.error("api.not_started", listen=config.api.listen, error=str(err)[:200])

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            # Without [api] nothing to import: FastAPI and uvicorn took 1.3-5.1 s of a
            # SIGTERM to load on a loaded machine (issue #20), only to find nothing to stop.
            return
        from syncd.api.server import ApiServer

        if isinstance(server, ApiServer):
            server.stop()
