"""One pass over sources, as `syncd sync` runs it over all of them and a daemon's worker over
one: each source synced, then the follow-up rules (when the caller runs them with the pass),
then the task list of each source whose account synced.

The daemon runs the rules as a timed job instead (engine/timed_jobs.py: after any capture and
on their own timer, once across the daemons), so its passes push what the last evaluation
made; `syncd sync` runs them inside its one pass, so its task lists get what this pass made.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from syncd.domain.matching import Directory
from syncd.engine.imap.mail_sync import Progress
from syncd.engine.sources import Fence, Source, SyncReport
from syncd.errors import RemoteError
from syncd.logs import get_logger

log = get_logger("syncd.tasks")


def _no_fence(_conn: object) -> None:
    return None


def _never() -> bool:
    return False


@dataclass(slots=True)
class PassResult:
    """One source's part of a pass: its sync, and its task list's push."""

    source: Source
    report: SyncReport
    tasks: dict[str, int] | None = None  # what the push did; None: no task list, or not pushed
    tasks_error: RemoteError | None = None

    @property
    def error(self) -> RemoteError | None:
        """What failed the source as a whole: its account, else its task list."""
        return self.report.error or self.tasks_error


def sync_pass(
    sources: Sequence[Source],
    directory: Directory,
    *,
    rules: Callable[[], None] | None = None,
    fence: Fence = _no_fence,
    should_stop: Callable[[], bool] = _never,
    progress: Progress | None = None,
) -> list[PassResult]:
    results = [
        PassResult(
            source,
            source.sync(directory, should_stop=should_stop, fence=fence, progress=progress),
        )
        for source in sources
    ]
    if rules is not None:
        rules()  # the task lists below get what this pass's records made
    for result in results:
        if result.report.error is not None:
            continue  # its server failed the pass: its task list waits for the next one
        try:
            result.tasks = result.source.push_tasks(fence)
        except RemoteError as err:
            log.warning("tasks.calendar_failed", source=result.source.name, error=str(err))
            result.tasks_error = err
    return results
