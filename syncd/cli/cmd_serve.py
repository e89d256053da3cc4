"""serve: the HTTP API alone, without capturing (e.g. on another host, same PostgreSQL)."""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import replace
from types import FrameType
from typing import Any

import click

from syncd.cli.app import App, pass_app
from syncd.errors import UserError


@click.command()
@click.option("--listen", metavar="HOST:PORT", help="Listen here instead of [api] listen.")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    help="Processes serving the API instead of [api] workers (default: the core count).",
)
@pass_app
def serve(app: App, listen: str | None, workers: int | None) -> None:
    """Serve the HTTP API alone ([api] listen), without capturing.

    Several processes share the port ([api] workers, default one a core); stops on
    SIGTERM or SIGINT after the requests in flight (long polls end at once).
    """
    from syncd.api.processes import default_workers
    from syncd.api.processes import serve as start_api
    from syncd.config import ApiConfig
    from syncd.metrics import Metrics

    root = logging.getLogger()
    root.setLevel(min(root.level, logging.INFO))
    config = app.config
    if config.api is None and listen is None:
        raise UserError(
            "no [api] section in the config", hint='add [api] listen = "127.0.0.1:8780"'
        )
    api_config = config.api or ApiConfig()
    if listen is not None:
        try:
            api_config = replace(api_config, listen=listen)
        except ValueError as err:
            raise UserError(f"--listen: {err}") from None
    config = replace(config, api=api_config)
    app.engine  # noqa: B018 - migrate (or fail with the database's message) before serving
    stopping = threading.Event()

    def stop(_signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    metrics = Metrics()
    server: Any = None  # ApiServer or ApiProcesses
    scrape = None
    # Before the API listens: a SIGTERM as soon as it does (its first process may listen
    # before the others are up) stops it as any other would.
    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        if config.metrics.listen:  # the API's request counts and latencies, as `syncd run` shows
            from syncd.metrics import MetricsServer

            scrape = MetricsServer(
                config.metrics.address, metrics, lambda: server is not None and server.alive
            ).start()
        server = start_api(config, metrics, workers or default_workers(api_config, alone=True))
        click.echo(f"serving the API on {server.url} (docs: {server.url}/api/docs)", err=True)
        while not stopping.wait(0.5):
            if not server.alive:
                raise UserError("the API server stopped", hint="see the log above")
    finally:
        if server is not None:
            server.stop()
        if scrape is not None:
            scrape.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
