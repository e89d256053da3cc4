"""[api] rate_limit with several API processes ([api] workers): each allows its share."""

from __future__ import annotations

from typing import cast

import pytest
from sqlalchemy import Engine

from syncd.api.auth import Authenticator
from syncd.api.problems import Problem
from syncd.store.api_tokens import Token

TOKEN = Token(id=1, name="crm", scope="read", rep=None, expires_at=None, last_used_at=None)


def _admitted(auth: Authenticator, times: list[float]) -> list[bool]:
    out = []
    for now in times:
        try:
            auth._throttle(TOKEN, now)
        except Problem as err:
            assert err.status == 429
            processes = auth._processes
            if processes == 1:
                assert err.detail == "more than 10 requests a second with this token"
            else:  # the share applied, said
                assert f"more than {10 / processes:g} requests a second" in err.detail
                assert f"rate_limit 10, divided among {processes} API processes" in err.detail
            out.append(False)
        else:
            out.append(True)
    return out


@pytest.mark.parametrize("processes", [1, 2, 4])
def test_each_process_takes_its_share_of_the_rate(processes: int) -> None:
    auth = Authenticator(cast(Engine, None), rate_limit=10, processes=processes)
    share = 10 // processes
    # A burst at one instant: the share, then 429; a second later, the share again.
    burst = _admitted(auth, [100.0] * 12)
    assert burst == [True] * share + [False] * (12 - share)
    assert _admitted(auth, [101.0] * 12).count(True) == share


def test_a_share_under_one_request_still_admits_one() -> None:
    auth = Authenticator(cast(Engine, None), rate_limit=10, processes=40)  # 0.25 a second
    assert _admitted(auth, [5.0, 5.0, 6.0, 9.0, 9.0]) == [True, False, False, True, False]
