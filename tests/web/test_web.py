"""netbus/roles/web/app.py: the browser client's files, /config.js, the public /healthz, the
admin app (cluster /healthz, /metrics) and the security headers of every public response."""

from __future__ import annotations

import asyncio

import aiohttp
import aiohttp.web
import orjson
import pytest
from prometheus_client import CONTENT_TYPE_LATEST

from netbus.config import load_settings
from netbus.roles.web.app import PUBLIC_HEALTH_MAX_AGE, STATIC_DIR, WebServer

from .conftest import Cluster, sample

needs_client = pytest.mark.skipif(
    not (STATIC_DIR / "index.html").is_file(), reason="static client not written yet"
)


async def test_healthz_all_up(cluster: Cluster) -> None:
    status, doc = await cluster.get_json(cluster.web_admin_url + "/healthz")
    assert status == 200
    assert doc["role"] == "web"
    assert doc["status"] == "ok"
    assert set(doc["roles"]) == {"web", "gateway", "center", "talkroom"}
    assert doc["roles"]["web"] == {
        "status": "ok",
        "uptime": doc["uptime"],
        "metrics": "/metrics",
    }
    for role in ("gateway", "center", "talkroom"):
        entry = doc["roles"][role]
        base = cluster.admin_url(role)
        assert entry["status"] == "ok"
        assert entry["url"] == base + "/healthz"
        assert entry["metrics"] == base + "/metrics"
        assert entry["health"]["role"] == role
    assert doc["roles"]["gateway"]["health"]["services"]["auth"]
    # the listed metrics links work
    status, ctype, _ = await cluster.get(doc["roles"]["center"]["metrics"])
    assert (status, ctype) == (200, CONTENT_TYPE_LATEST)


async def test_healthz_503_when_a_role_is_down(cluster: Cluster) -> None:
    await cluster.stop("talkroom")
    status, doc = await cluster.get_json(cluster.web_admin_url + "/healthz")
    assert status == 503
    assert doc["status"] == "degraded"
    assert doc["roles"]["talkroom"]["status"] == "down"
    assert "error" in doc["roles"]["talkroom"]
    assert "health" not in doc["roles"]["talkroom"]
    assert doc["roles"]["center"]["status"] == "ok"
    assert doc["roles"]["gateway"]["status"] == "ok"
    status, _, body = await cluster.get(cluster.web_admin_url + "/metrics")
    text = body.decode()
    assert sample(text, "netbus_cluster_role_up", role="talkroom") == 0
    assert sample(text, "netbus_cluster_role_up", role="center") == 1


async def test_healthz_times_out_on_a_silent_role(cluster: Cluster) -> None:
    """A role that accepts but never answers is "down" after web.health_timeout."""

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers; returns when the web role gives up
        writer.close()

    silent = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    web_settings = cluster.settings.web.model_copy(
        update={"health_timeout": 0.3, "health_targets": {"stuck": f"http://127.0.0.1:{port}"}}
    )
    settings = cluster.settings.model_copy(update={"web": web_settings})
    try:
        async with WebServer(settings, port=0, admin_port=0) as web:
            loop = asyncio.get_running_loop()
            start = loop.time()
            status, doc = await web.cluster_health()
            assert loop.time() - start < 2
    finally:
        silent.close()
        await silent.wait_closed()
    assert status == 503
    assert doc["roles"]["stuck"]["status"] == "down"
    assert "0.3" in doc["roles"]["stuck"]["error"]


async def test_concurrent_healthz_share_one_round(cluster: Cluster) -> None:
    results = await asyncio.gather(*(cluster.web.cluster_health() for _ in range(20)))
    assert all(status == 200 for status, _ in results)
    assert len({id(doc) for _, doc in results}) == 1


async def test_web_metrics_on_the_admin_port_only(cluster: Cluster) -> None:
    await cluster.get(cluster.web_admin_url + "/healthz")
    status, ctype, body = await cluster.get(cluster.web_admin_url + "/metrics")
    assert (status, ctype) == (200, CONTENT_TYPE_LATEST)
    assert sample(body.decode(), "netbus_cluster_role_up", role="gateway") == 1
    status, _, body = await cluster.get(cluster.web_url + "/metrics")
    assert status == 404
    assert b"netbus_" not in body


async def test_public_healthz_says_ok_or_degraded_and_nothing_else(cluster: Cluster) -> None:
    assert await cluster.get_json(cluster.web_url + "/healthz") == (200, {"status": "ok"})
    await cluster.stop("center")
    # the details are on the admin port; that round is also the freshest for the public one
    status, doc = await cluster.get_json(cluster.web_admin_url + "/healthz")
    assert status == 503
    assert doc["roles"]["center"]["status"] == "down"
    assert "error" in doc["roles"]["center"]
    status, _, body = await cluster.get(cluster.web_url + "/healthz")
    assert (status, orjson.loads(body)) == (503, {"status": "degraded"})
    assert b"127.0.0.1" not in body and b"rror" not in body


async def test_public_healthz_reuses_a_fresh_round() -> None:
    now = [100.0]
    calls: list[str] = []

    async def role(request: aiohttp.web.Request) -> aiohttp.web.Response:
        calls.append(request.path)
        return aiohttp.web.json_response({"role": "x", "status": "ok"})

    app = aiohttp.web.Application()
    app.router.add_get("/healthz", role)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    settings = load_settings(web={"port": 0, "admin_port": 0})
    targets = {"x": f"http://127.0.0.1:{port}"}
    try:
        async with WebServer(settings, targets=targets, clock=lambda: now[0]) as web:
            assert await web.public_health() == 200
            assert await web.public_health() == 200
            assert len(calls) == 1
            now[0] += PUBLIC_HEALTH_MAX_AGE
            assert await web.public_health() == 200
            assert len(calls) == 2
            await web.cluster_health()  # the admin /healthz always asks
            assert len(calls) == 3
    finally:
        await runner.cleanup()


PUBLIC_PATHS = [
    ("/", 200),
    ("/index.html", 200),
    ("/app.js", 200),
    ("/static/style.css", 200),
    ("/config.js", 200),
    ("/healthz", 200),
    ("/metrics", 404),
    ("/nope.js", 404),
]


@needs_client
async def test_security_headers_on_every_public_response(cluster: Cluster) -> None:
    for path, expected in PUBLIC_PATHS:
        async with cluster.http.get(cluster.web_url + path) as resp:
            assert resp.status == expected, path
            headers = resp.headers
        assert headers["X-Frame-Options"] == "DENY", path
        assert headers["X-Content-Type-Options"] == "nosniff", path
        assert headers["Referrer-Policy"] == "no-referrer", path
        csp = dict(
            item.strip().split(" ", 1) for item in headers["Content-Security-Policy"].split(";")
        )
        assert csp["default-src"] == "'none'", path
        assert csp["script-src"] == "'self'", path
        assert csp["frame-ancestors"] == "'none'", path
        # gateway_url is unset: the page's own host, port 6081, and nothing else
        assert csp["connect-src"] == "ws://127.0.0.1:6081 wss://127.0.0.1:6081", path


async def test_config_js_default_null(cluster: Cluster) -> None:
    status, ctype, body = await cluster.get(cluster.web_url + "/config.js")
    assert status == 200
    assert ctype.startswith("text/javascript")
    assert body == b'window.NETBUS_CONFIG = {"gatewayUrl":null};\n'


async def test_config_js_gateway_url() -> None:
    url = 'wss://play.example.com/ws?x="</script>'
    settings = load_settings(
        web={"port": 0, "admin_port": 0, "gateway_url": url, "health_targets": {"a": "x"}}
    )
    async with (
        WebServer(settings) as web,
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{web.port}/config.js") as resp,
    ):
        body = await resp.read()
    prefix, _, rest = body.partition(b" = ")
    assert prefix == b"window.NETBUS_CONFIG"
    assert orjson.loads(rest.rstrip(b";\n")) == {"gatewayUrl": url}


@needs_client
async def test_serves_index_and_static_files(cluster: Cluster) -> None:
    index = (STATIC_DIR / "index.html").read_bytes()
    for path in ("/", "/index.html", "/static/index.html"):
        status, ctype, body = await cluster.get(cluster.web_url + path)
        assert status == 200, path
        assert ctype.startswith("text/html"), path
        assert body == index, path
    for name in sorted(p.name for p in STATIC_DIR.iterdir() if p.is_file()):
        for path in (f"/{name}", f"/static/{name}"):
            status, _, body = await cluster.get(cluster.web_url + path)
            assert status == 200, path
            assert body == (STATIC_DIR / name).read_bytes(), path


async def test_no_files_outside_the_static_folder(cluster: Cluster) -> None:
    for path in ("/../app.py", "/%2e%2e/app.py", "/static/../app.py", "/nope.js"):
        status, _, body = await cluster.get(cluster.web_url + path)
        assert status in (403, 404), path
        assert b"WebServer" not in body
