"""The dashboard's I/O-free parts: the route table, the token check, the metrics ring and its
config, the dashboard options, the paging arguments."""
import pytest

from zray.dashboard import http
from zray.dashboard.metrics_ring import MetricsRing, RingConfig
from zray.dashboard.options import dashboard_options


def test_routes_match_params_and_methods():
    r = http.Routes()
    r.add("GET", "/api/jobs/{job_id}", "get")
    r.add("DELETE", "/api/jobs/{job_id}", "delete")
    r.add("GET", "/api/jobs/{job_id}/logs", "logs")
    assert r.find("GET", "/api/jobs/abc") == ("get", {"job_id": "abc"})
    assert r.find("GET", "/api/jobs/a%20b/logs") == ("logs", {"job_id": "a b"})
    assert r.find("DELETE", "/api/jobs/x")[0] == "delete"
    with pytest.raises(http.HttpError) as err:
        r.find("POST", "/api/jobs/x")
    assert err.value.status == 405
    with pytest.raises(http.HttpError) as err:
        r.find("GET", "/api/nothing")
    assert err.value.status == 404


def test_token_from_header_query_or_cookie():
    ok = http.token_ok
    assert ok({"authorization": "Bearer s3cret"}, {}, "c", "s3cret")
    assert ok({}, {"token": "s3cret"}, "c", "s3cret")
    assert ok({"cookie": "a=1; c=s3cret"}, {}, "c", "s3cret")
    assert not ok({"authorization": "Bearer wrong"}, {}, "c", "s3cret")
    assert not ok({"authorization": "Basic s3cret"}, {}, "c", "s3cret")
    assert not ok({"cookie": "other=s3cret"}, {}, "c", "s3cret")
    assert not ok({}, {}, "c", "s3cret")


def test_ring_keeps_the_newest_and_derives_tasks_per_second():
    ring = MetricsRing(RingConfig(capacity=3, interval_s=2.0))
    assert ring.config.span_s() == 6.0
    for t, done in [(0, 0), (2, 10), (4, 30), (6, 30)]:
        ring.add({"time": t, "tasks_finished": done})
    assert len(ring) == 3
    assert [s["tasks_per_s"] for s in ring.since(0)] == [5.0, 10.0, 0.0]
    assert [s["time"] for s in ring.since(3)] == [4, 6]
    ring.add({"time": 8, "tasks_finished": 0})      # a restarted counter: no negative rate
    assert ring.latest()["tasks_per_s"] == 0.0
    with pytest.raises(ValueError):
        ring.add({"cpu": 1})


@pytest.mark.parametrize("kwargs", [{"capacity": 1}, {"capacity": 2.5}, {"interval_s": 0}])
def test_ring_config_bounds(kwargs):
    with pytest.raises(ValueError):
        RingConfig(**kwargs)


def test_dashboard_options(monkeypatch):
    monkeypatch.delenv("ZRAY_INCLUDE_DASHBOARD", raising=False)
    monkeypatch.delenv("ZRAY_DASHBOARD_PORT", raising=False)
    monkeypatch.delenv("ZRAY_DASHBOARD_HOST", raising=False)
    assert dashboard_options({}) == (8265, "127.0.0.1")
    assert dashboard_options({"include_dashboard": False})[0] is None
    assert dashboard_options({"dashboard_port": 0, "dashboard_host": "0.0.0.0"}) == (0, "0.0.0.0")
    monkeypatch.setenv("ZRAY_DASHBOARD_PORT", "9000")
    assert dashboard_options({})[0] == 9000
    monkeypatch.setenv("ZRAY_INCLUDE_DASHBOARD", "0")
    assert dashboard_options({})[0] is None
    monkeypatch.setenv("ZRAY_INCLUDE_DASHBOARD", "1")
    monkeypatch.setenv("ZRAY_DASHBOARD_PORT", "eighty")
    with pytest.raises(ValueError, match="ZRAY_DASHBOARD_PORT"):
        dashboard_options({})
    for bad in ({"dashboard_port": -1}, {"dashboard_port": True}, {"dashboard_port": "80"}):
        with pytest.raises(ValueError):
            dashboard_options(dict(bad))
    with pytest.raises(TypeError):
        dashboard_options({"include_dashboard": "yes", "dashboard_port": 1})


def test_listening_socket_falls_back_to_a_free_port():
    first = http.listening_socket("127.0.0.1", 0)
    taken = first.getsockname()[1]
    try:
        second = http.listening_socket("127.0.0.1", taken)
        assert second.getsockname()[1] != taken
        second.close()
        with pytest.raises(OSError):
            http.listening_socket("127.0.0.1", taken, fallback_to_free=False)
    finally:
        first.close()
