"""A poll's metrics, recorded through each source's labelled children looked up once."""

from __future__ import annotations

from syncd.metrics import Metrics


def test_each_poll_is_recorded_under_its_own_source() -> None:
    metrics = Metrics()
    for _ in range(3):
        metrics.synced("alice", "email", 0, 0.002, None)
    metrics.synced("bob", "email", 2, 0.5, None)
    metrics.synced("alice", "email", 0, 0.1, "transient")
    value = metrics.registry.get_sample_value
    assert value("syncd_sync_duration_seconds_count", {"source": "alice"}) == 4
    assert value("syncd_sync_duration_seconds_count", {"source": "bob"}) == 1
    assert value("syncd_sync_duration_seconds_sum", {"source": "bob"}) == 0.5
    assert value("syncd_records_captured_total", {"source": "bob", "kind": "email"}) == 2
    assert value("syncd_sync_errors_total", {"source": "alice", "kind": "transient"}) == 1
    assert (value("syncd_last_success_timestamp_seconds", {"source": "alice"}) or 0) > 0
    assert (value("syncd_last_success_timestamp_seconds", {"source": "bob"}) or 0) > 0
