"""zray.serve end to end: real HTTP clients against a real cluster (one per module).

Every server started here is stopped at the end of the module (serve.shutdown, then the
cluster); each test deletes its applications.
"""
import asyncio
import concurrent.futures
import socket
import threading
import time

import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("starlette")
httpx = pytest.importorskip("httpx")

import zray
from zray import serve

pytestmark = pytest.mark.timeout(180)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def base_url():
    if zray.is_initialized():
        zray.shutdown()
    zray.init(num_cpus=2)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        try:
            serve.shutdown()
        finally:
            zray.shutdown()


@pytest.fixture
def client(base_url):
    with httpx.Client(base_url=base_url, timeout=30) as c:
        yield c


def wait_for(pred, timeout=30, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(interval)
    return pred()


# -- the quickstart shape: a model answering JSON ---------------------------------------------------
def test_model_answers_json(client):
    @serve.deployment(num_replicas=2)
    class LinearModel:
        def __init__(self, weights, bias):
            import numpy as np
            self.w = np.asarray(weights)
            self.b = bias

        async def __call__(self, request):
            payload = await request.json()
            import numpy as np
            x = np.asarray(payload["features"])
            return {"prediction": float(x @ self.w + self.b)}

    serve.run(LinearModel.bind([1.0, 2.0], 0.5), name="model", route_prefix="/predict")
    try:
        r = client.post("/predict", json={"features": [3.0, 4.0]})
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/json"
        assert r.json() == {"prediction": 11.5}
        assert client.get("/-/healthz").text == "success"
        assert client.get("/-/routes").json()["/predict"] == "model"
    finally:
        serve.delete("model")
    assert client.post("/predict", json={"features": [1, 1]}).status_code == 404


def test_return_types_map_as_in_ray(client):
    @serve.deployment
    def kinds(request):
        kind = request.query_params["k"]
        from starlette.responses import PlainTextResponse
        return {"s": "text", "b": b"raw", "d": {"a": 1}, "n": None, "l": [1, 2],
                "r": PlainTextResponse("custom", status_code=201)}[kind]

    serve.run(kinds.bind(), name="kinds", route_prefix="/kinds")
    try:
        r = client.get("/kinds?k=s")
        assert (r.text, r.headers["content-type"]) == ("text", "text/plain; charset=utf-8")
        r = client.get("/kinds?k=b")
        assert (r.content, r.headers["content-type"]) == (b"raw", "text/plain")
        assert client.get("/kinds?k=d").json() == {"a": 1}
        assert client.get("/kinds?k=l").json() == [1, 2]
        assert client.get("/kinds?k=n").content == b""
        r = client.get("/kinds?k=r")
        assert (r.status_code, r.text) == (201, "custom")
    finally:
        serve.delete("kinds")


def test_sync_call_errors_awaitables_and_generators(client):
    # a plain synchronous __call__ runs inline in the replica (no task per request): each way
    # it can end must still answer as a task would
    @serve.deployment(max_ongoing_requests=2)
    class Sync:
        def __call__(self, request):
            kind = request.query_params["k"]
            if kind == "raise":
                raise ValueError("bad request")
            if kind == "await":
                async def later():
                    await asyncio.sleep(0.01)
                    return {"awaited": True}
                return later()
            if kind == "gen":
                return (f"part{i} " for i in range(3))
            return kind

    serve.run(Sync.bind(), name="sync", route_prefix="/sync")
    try:
        r = client.get("/sync?k=raise")
        assert r.status_code == 500
        assert client.get("/sync?k=plain").text == "plain"           # still serving
        assert client.get("/sync?k=await").json() == {"awaited": True}
        assert client.get("/sync?k=gen").text == "part0 part1 part2 "
        with concurrent.futures.ThreadPoolExecutor(8) as pool:       # more than max_ongoing
            texts = list(pool.map(lambda i: client.get(f"/sync?k=n{i}").text, range(16)))
        assert texts == [f"n{i}" for i in range(16)]
    finally:
        serve.delete("sync")


# -- FastAPI ingress ------------------------------------------------------------------------------
def test_fastapi_ingress_with_query_params(client):
    pytest.importorskip("fastapi")
    from fastapi import FastAPI
    app = FastAPI()

    @serve.deployment
    @serve.ingress(app)
    class Greeter:
        def __init__(self, greeting):
            self.greeting = greeting

        @app.get("/hello")
        def hello(self, name: str, times: int = 1):
            return {"text": " ".join([f"{self.greeting}, {name}!"] * times)}

        @app.post("/items/{item_id}")
        async def put(self, item_id: int, body: dict):
            return {"id": item_id, "body": body}

    serve.run(Greeter.bind("Hi"), name="fa", route_prefix="/api")
    try:
        r = client.get("/api/hello", params={"name": "zray", "times": 2})
        assert r.status_code == 200, r.text
        assert r.json() == {"text": "Hi, zray! Hi, zray!"}
        assert client.post("/api/items/7", json={"a": 1}).json() == {"id": 7, "body": {"a": 1}}
        # malformed requests: FastAPI's validation answers 422, unknown paths 404
        assert client.get("/api/hello", params={"times": "x"}).status_code == 422
        assert client.post("/api/items/7", content=b"{not json",
                           headers={"content-type": "application/json"}).status_code == 422
        assert client.get("/api/nope").status_code == 404
    finally:
        serve.delete("fa")


def test_malformed_request_to_a_plain_deployment(client):
    @serve.deployment
    class Echo:
        async def __call__(self, request):
            return await request.json()

    serve.run(Echo.bind(), name="echo", route_prefix="/echo")
    try:
        r = client.post("/echo", content=b"{this is not json")
        assert r.status_code == 500
        assert client.post("/echo", json={"ok": True}).json() == {"ok": True}   # still serving
        assert client.get("/nowhere").status_code == 404
    finally:
        serve.delete("echo")


# -- composition and handles ----------------------------------------------------------------------
@serve.deployment
class Adder:
    def __init__(self, n):
        self.n = n

    def __call__(self, x):
        return x + self.n

    def twice(self, x):
        return 2 * x


@serve.deployment
class Ingress:
    def __init__(self, adder, multiplier):
        self.adder = adder
        self.multiplier = multiplier

    async def __call__(self, request):
        x = int(request.query_params["x"])
        return await self.run(x)

    async def run(self, x):
        added = self.adder.remote(x)                  # passed on unawaited
        return await self.multiplier.remote(added)


@serve.deployment
def Multiplier(y):
    return 10 * y


def test_composition_over_http_and_handles(client):
    handle = serve.run(Ingress.bind(Adder.bind(1), Multiplier.bind()), name="comp",
                       route_prefix="/comp")
    try:
        assert client.get("/comp", params={"x": 4}).json() == 50
        assert handle.run.remote(1).result() == 20
        assert handle.options(method_name="run").remote(2).result() == 30
        adder = serve.get_deployment_handle("Adder", "comp")
        assert adder.remote(5).result() == 6
        assert adder.twice.remote(5).result() == 10
        # a response passed unawaited into another call is resolved first
        mult = serve.get_deployment_handle("Multiplier", app_name="comp")
        assert mult.remote(adder.remote(1)).result() == 20
        assert serve.get_app_handle("comp").run.remote(0).result() == 10

        async def main():
            return await asyncio.gather(*[adder.remote(i) for i in range(5)])
        assert asyncio.run(main()) == [1, 2, 3, 4, 5]
        with pytest.raises(serve.RayServeException):
            serve.get_app_handle("nope")
        with pytest.raises(KeyError):
            serve.get_deployment_handle("Nope", "comp")
    finally:
        serve.delete("comp")


def test_errors_reach_the_caller_and_replica_context():
    @serve.deployment
    class Ctx:
        def __call__(self):
            ctx = serve.get_replica_context()
            return (ctx.app_name, ctx.deployment, ctx.replica_tag is not None)

        def fail(self):
            raise ValueError("boom")

    h = serve.run(Ctx.bind(), name="ctx", route_prefix=None)
    try:
        assert h.remote().result() == ("ctx", "Ctx", True)
        with pytest.raises(ValueError, match="boom"):
            h.fail.remote().result()
        with pytest.raises(serve.RayServeException):
            serve.get_replica_context()
    finally:
        serve.delete("ctx")


def test_failed_constructor_fails_the_deploy():
    @serve.deployment
    class Broken:
        def __init__(self):
            raise RuntimeError("no model file")

    with pytest.raises(RuntimeError, match="no model file"):
        serve.run(Broken.bind(), name="broken", route_prefix="/broken")
    assert serve.status().applications["broken"].status == "DEPLOY_FAILED"
    serve.delete("broken")


# -- batching ---------------------------------------------------------------------------------------
def test_concurrent_calls_are_batched(client):
    @serve.deployment(max_ongoing_requests=32)
    class Batched:
        @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.2)
        async def __call__(self, requests):
            return [{"batch": len(requests)} for _ in requests]

        @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.2)
        async def double(self, xs):
            return [(x * 2, len(xs)) for x in xs]

    h = serve.run(Batched.bind(), name="batch", route_prefix="/batch")
    try:
        responses = [h.double.remote(i) for i in range(8)]
        results = [r.result() for r in responses]
        assert [r[0] for r in results] == [i * 2 for i in range(8)]
        assert max(r[1] for r in results) > 1
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            sizes = list(pool.map(lambda _: client.get("/batch").json()["batch"], range(8)))
        assert max(sizes) > 1
    finally:
        serve.delete("batch")


# -- streaming ------------------------------------------------------------------------------------
def test_streaming_over_handles_and_http(base_url):
    from starlette.responses import StreamingResponse

    @serve.deployment
    class Streamer:
        def numbers(self, n):
            for i in range(n):
                yield i

        async def __call__(self, request):
            n = int(request.query_params.get("n", 3))

            async def gen():
                for i in range(n):
                    yield f"chunk{i}\n"
                    await asyncio.sleep(0.05)
            return StreamingResponse(gen(), media_type="text/plain")

    h = serve.run(Streamer.bind(), name="stream", route_prefix="/stream")
    try:
        gen = h.options(method_name="numbers", stream=True).remote(4)
        assert list(gen) == [0, 1, 2, 3]

        async def consume():
            return [x async for x in h.options(stream=True).numbers.remote(3)]
        assert asyncio.run(consume()) == [0, 1, 2]
        chunks = []
        times = []
        with httpx.stream("GET", f"{base_url}/stream?n=4", timeout=30) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                chunks.append(line)
                times.append(time.monotonic())
        assert chunks == [f"chunk{i}" for i in range(4)]
        assert times[-1] - times[0] > 0.08        # they came one by one, not all at the end
        with pytest.raises(Exception):
            h.numbers.remote(2).result()           # a generator needs stream=True
    finally:
        serve.delete("stream")


# -- user_config and health -------------------------------------------------------------------------
def test_user_config_reconfigures_in_place(client):
    @serve.deployment(user_config={"greeting": "hello"})
    class Configurable:
        def reconfigure(self, config):
            self.greeting = config["greeting"]

        def __call__(self, request):
            import os
            return {"greeting": self.greeting, "pid": os.getpid()}

    serve.run(Configurable.bind(), name="cfg", route_prefix="/cfg")
    try:
        first = client.get("/cfg").json()
        assert first["greeting"] == "hello"
        serve.run(Configurable.options(user_config={"greeting": "bonjour"}).bind(), name="cfg",
                  route_prefix="/cfg")
        second = client.get("/cfg").json()
        assert second == {"greeting": "bonjour", "pid": first["pid"]}   # same replica
    finally:
        serve.delete("cfg")


def test_failing_health_check_replaces_the_replica():
    @serve.deployment(health_check_period_s=0.2, health_check_timeout_s=2)
    class Fragile:
        def __init__(self):
            self.broken = False

        def break_(self):
            self.broken = True

        def check_health(self):
            if self.broken:
                raise RuntimeError("broken")

        def pid(self):
            import os
            return os.getpid()

    h = serve.run(Fragile.bind(), name="fragile", route_prefix=None)
    try:
        pid = h.pid.remote().result()
        h.break_.remote().result()

        def replaced():
            try:
                return h.pid.remote().result(timeout_s=5) != pid
            except Exception:   # noqa: BLE001 - the old replica is going away
                return False
        assert wait_for(replaced, timeout=30)
    finally:
        serve.delete("fragile")


# -- failures under load ------------------------------------------------------------------------------
def test_killed_replica_under_load(base_url):
    @serve.deployment(num_replicas=2, max_ongoing_requests=8, graceful_shutdown_timeout_s=1)
    class Slowish:
        async def __call__(self, request):
            await asyncio.sleep(0.01)
            return "ok"

    serve.run(Slowish.bind(), name="kill", route_prefix="/kill")
    controller = zray.get_actor("SERVE_CONTROLLER_ACTOR", namespace="serve")
    statuses = []
    stop = threading.Event()

    def load():
        with httpx.Client(base_url=base_url, timeout=20) as c:
            while not stop.is_set():
                statuses.append(c.get("/kill").status_code)

    threads = [threading.Thread(target=load) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        wait_for(lambda: len(statuses) > 20, timeout=20)
        replicas = zray.get(controller.get_replicas.remote("kill", "Slowish"))
        victim = replicas[0]
        zray.kill(victim[3])
        before = len(statuses)
        wait_for(lambda: len(statuses) > before + 50, timeout=30)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert not any(t.is_alive() for t in threads), "a request hung"
    assert set(statuses) <= {200, 503}, set(statuses)
    assert statuses.count(200) > 50

    def two_running():
        reps = zray.get(controller.get_replicas.remote("kill", "Slowish"))
        return len([r for r in reps if r[1] == "RUNNING"]) == 2 and victim[0] not in [r[0] for r in reps]
    assert wait_for(two_running, timeout=30)
    with httpx.Client(base_url=base_url, timeout=20) as c:
        assert all(c.get("/kill").status_code == 200 for _ in range(10))
    serve.delete("kill")


def test_503_past_the_queue_limit(base_url):
    @serve.deployment(max_ongoing_requests=1, max_queued_requests=1)
    class Slow:
        async def __call__(self, request):
            await asyncio.sleep(1.0)
            return "done"

    serve.run(Slow.bind(), name="queue", route_prefix="/queue")
    try:
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            codes = list(pool.map(lambda _: httpx.get(f"{base_url}/queue", timeout=30).status_code,
                                  range(6)))
        assert codes.count(503) >= 3, codes
        assert codes.count(200) >= 1, codes
        assert set(codes) <= {200, 503}
    finally:
        serve.delete("queue")


def test_async_function_deployment(base_url):
    """No request_timeout_s (the default): a slow answer is waited for (408: test_serve_timeout)."""
    @serve.deployment
    async def sleepy(request):
        await asyncio.sleep(0.2)
        return "late"
    serve.run(sleepy.bind(), name="sleepy", route_prefix="/sleepy")
    try:
        assert httpx.get(f"{base_url}/sleepy", timeout=30).text == "late"
    finally:
        serve.delete("sleepy")


# -- autoscaling -----------------------------------------------------------------------------------
def test_autoscaling_up_and_down(base_url):
    @serve.deployment(max_ongoing_requests=10, autoscaling_config={
        "min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 1,
        "metrics_interval_s": 0.1, "look_back_period_s": 0.5,
        "upscale_delay_s": 0.2, "downscale_delay_s": 1.0})
    class Busy:
        async def __call__(self, request):
            await asyncio.sleep(0.2)
            return "ok"

    serve.run(Busy.bind(), name="auto", route_prefix="/auto")

    def running():
        st = serve.status().applications["auto"].deployments["Busy"]
        return st.replica_states.get("RUNNING", 0)
    assert running() == 1
    stop = threading.Event()

    def load():
        with httpx.Client(timeout=30) as c:
            while not stop.is_set():
                c.get(f"{base_url}/auto")

    threads = [threading.Thread(target=load) for _ in range(6)]
    try:
        for t in threads:
            t.start()
        assert wait_for(lambda: running() >= 3, timeout=60), serve.status()
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert wait_for(lambda: running() == 1, timeout=60), serve.status()
    serve.delete("auto")


# -- multiplexing, status, delete ------------------------------------------------------------------------
def test_multiplexed_models(client):
    @serve.deployment
    class Models:
        @serve.multiplexed(max_num_models_per_replica=2)
        async def get_model(self, model_id):
            return {"id": model_id}

        async def __call__(self, request=None):
            model = await self.get_model(serve.get_multiplexed_model_id())
            return model["id"]

    h = serve.run(Models.bind(), name="mux", route_prefix="/mux")
    try:
        assert client.get("/mux", headers={"serve_multiplexed_model_id": "m1"}).text == "m1"
        assert h.options(multiplexed_model_id="m2").remote().result() == "m2"
    finally:
        serve.delete("mux")


def test_status_and_route_conflicts():
    @serve.deployment
    def one(request):
        return 1

    serve.run(one.bind(), name="s1", route_prefix="/s")
    try:
        st = serve.status()
        app = st.applications["s1"]
        assert app.status == serve.ApplicationStatus.RUNNING
        assert app.deployments["one"].status == "HEALTHY"
        assert list(st.proxies.values()) == [serve.ProxyStatus.HEALTHY]
        with pytest.raises(ValueError, match="Prefix /s"):
            serve.run(one.bind(), name="s2", route_prefix="/s")
    finally:
        serve.delete("s1")
    assert "s1" not in serve.status().applications


def test_redeploy_rolls_over_without_dropping_requests(base_url):
    def make(version):
        @serve.deployment(name="Versioned", num_replicas=2, graceful_shutdown_timeout_s=5)
        class Versioned:
            def __init__(self):
                self.version = version

            async def __call__(self, request):
                await asyncio.sleep(0.05)
                return self.version
        return Versioned

    serve.run(make("v1").bind(), name="roll", route_prefix="/roll")
    bodies = []
    codes = []
    stop = threading.Event()

    def load():
        with httpx.Client(base_url=base_url, timeout=20) as c:
            while not stop.is_set():
                r = c.get("/roll")
                codes.append(r.status_code)
                bodies.append(r.text)

    threads = [threading.Thread(target=load) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        wait_for(lambda: len(codes) > 10, timeout=20)
        serve.run(make("v2").bind(), name="roll", route_prefix="/roll")   # new code: new replicas
        n = len(codes)
        wait_for(lambda: len(codes) > n + 20, timeout=20)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert set(codes) == {200}, set(codes)          # old replicas drained, none dropped
    assert bodies[-1] == "v2" and "v1" in bodies
    reps = zray.get(zray.get_actor("SERVE_CONTROLLER_ACTOR", namespace="serve")
                    .get_replicas.remote("roll", "Versioned"))
    assert wait_for(lambda: len(zray.get(zray.get_actor("SERVE_CONTROLLER_ACTOR", namespace="serve")
                                         .get_replicas.remote("roll", "Versioned"))) == 2, timeout=30), reps
    serve.delete("roll")


def test_scale_to_zero_and_back_over_http_and_handles(base_url):
    @serve.deployment(autoscaling_config={
        "min_replicas": 0, "max_replicas": 2, "initial_replicas": 0, "metrics_interval_s": 0.1,
        "look_back_period_s": 0.3, "upscale_delay_s": 0, "downscale_delay_s": 0.5})
    class Lazy:
        def __call__(self, request):
            return "up"

        def ping(self):
            return "pong"

    h = serve.run(Lazy.bind(), name="zero", route_prefix="/zero")

    def replicas():
        return serve.status().applications["zero"].deployments["Lazy"].replica_states.get("RUNNING", 0)
    try:
        assert replicas() == 0
        assert httpx.get(f"{base_url}/zero", timeout=60).text == "up"      # waits in the proxy
        assert wait_for(lambda: replicas() == 0, timeout=30)
        assert h.ping.remote().result(timeout_s=60) == "pong"               # waits in the handle
    finally:
        serve.delete("zero")
