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
    type=click.IntRange(1, 16),  # syncd.config.MAX_API_WORKERS (not imported at start-up)
    help="Processes serving the API instead of [api] workers (default 1).",
)
@pass_app
def serve(app: App, listen: str | None, workers: int | None) -> None:
    """Serve the HTTP API alone ([api] listen), without capturing.

    With [api] workers = N, N processes serve the one listener (each enforces
    rate_limit / N per token); stops on SIGTERM or SIGINT after the requests in flight
    (long polls end at once).
    """
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
    clean: bool | None = None
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
        try:
            server = start_api(config, metrics, workers or api_config.workers)
        except OSError as err:  # the port taken (EADDRINUSE), the certificate unreadable
            raise UserError(
                f"the API cannot serve on {api_config.listen}: {err}",
                hint="another process listens there? see the log above",
            ) from None
        click.echo(f"serving the API on {server.url} (docs: {server.url}/api/docs)", err=True)
        while not stopping.wait(0.5):
            if not server.alive:
                raise UserError("the API server stopped", hint="see the log above")
    finally:
        if server is not None:
            clean = server.stop()  # ApiProcesses: whether every process exited 0
        if scrape is not None:
            scrape.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if clean is False:
        raise UserError("an API process ended with an error", hint="see the log above")
