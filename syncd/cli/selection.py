"""Which sources a command covers (`syncd sync`, `syncd verify`): light, so that `sync`
imports no verify."""

from __future__ import annotations

from syncd.cli.app import App
from syncd.errors import UserError


def selected_sources(
    app: App, names: tuple[str, ...], calendars: tuple[str, ...]
) -> tuple[list[str] | None, list[str] | None]:
    """Which mailboxes and calendars a command covers; an unknown name is a user error.
    Naming only mailboxes (or only calendars) selects only those, as `syncd sync` does."""
    boxes = {b.name for b in app.config.mailbox}
    for name in names:
        if name not in boxes:
            raise UserError(
                f"no [[mailbox]] named {name!r}",
                hint=f"mailboxes in the config: {', '.join(sorted(boxes)) or 'none'}",
            )
    known = {c.name for c in app.config.calendar}
    for name in calendars:
        if name not in known:
            raise UserError(
                f"no [[calendar]] named {name!r}",
                hint=f"calendars in the config: {', '.join(sorted(known)) or 'none'}",
            )
    mailboxes = list(names) or ([] if calendars else None)
    return mailboxes, list(calendars) or ([] if names else None)
