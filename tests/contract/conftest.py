"""Backends for the contract suites: each test runs once on the fake, once on the real server."""

from __future__ import annotations

import pytest

from tests import conftest as suite
from tests.contract.backends import DovecotMail, FakeCalendars, FakeMail, RadicaleCalendars
from tests.servers.dovecot import Dovecot
from tests.servers.radicale import Radicale

MailBackend = FakeMail | DovecotMail
CalendarBackend = FakeCalendars | RadicaleCalendars


@pytest.fixture(params=["fake", pytest.param("dovecot", marks=pytest.mark.dovecot)])
def mail(request: pytest.FixtureRequest) -> MailBackend:
    if request.param == "fake":
        return FakeMail()
    dovecot: Dovecot = request.getfixturevalue("dovecot")
    # A login of its own from the suite's pool: a fresh, empty mailbox.
    return DovecotMail(dovecot, f"user{next(suite._USER_IDS)}")


@pytest.fixture(params=["fake", pytest.param("radicale", marks=pytest.mark.radicale)])
def calendars(request: pytest.FixtureRequest) -> CalendarBackend:
    if request.param == "fake":
        return FakeCalendars()
    radicale: Radicale = request.getfixturevalue("radicale")
    return RadicaleCalendars(radicale, f"cal{next(suite._CAL_IDS)}")
