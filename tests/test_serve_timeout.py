"""http_options.request_timeout_s: the proxy answers 408 instead of waiting (own cluster)."""
import asyncio
import socket

import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("starlette")
httpx = pytest.importorskip("httpx")

import zray
from zray import serve

pytestmark = pytest.mark.timeout(120)


def test_request_timeout_answers_408():
    if zray.is_initialized():
        zray.shutdown()
    zray.init(num_cpus=2)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    try:
        serve.start(http_options={"port": port, "request_timeout_s": 0.5})

        @serve.deployment
        class Slow:
            async def __call__(self, request):
                if request.query_params.get("slow"):
                    await asyncio.sleep(3)
                return "ok"

        serve.run(Slow.bind(), route_prefix="/")
        r = httpx.get(f"http://127.0.0.1:{port}/?slow=1", timeout=30)
        assert r.status_code == 408
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=30).text == "ok"
    finally:
        try:
            serve.shutdown()
        finally:
            zray.shutdown()
