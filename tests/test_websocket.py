"""Websockets, raw sockets, unix sockets and long-lived streams, through the real CLI."""

from __future__ import annotations

import asyncio
import http.client
import os
import re
import stat
import sys

import aiohttp
import pytest

from conftest import APPS, ECHO_APP, peak_rss_kib, wait_for

MiB = 1024 * 1024


def ws_url(proxy, path: str = "ws") -> str:
    return proxy.url(path).replace("http://", "ws://")


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


@pytest.fixture
def proxy(start_proxy):
    return start_proxy()


def test_text_and_binary_messages_echo_in_order(proxy):
    async def go():
        async with aiohttp.ClientSession() as s, s.ws_connect(ws_url(proxy)) as ws:
            sent = [f"text {i}" if i % 2 else bytes([i]) * (i + 1) for i in range(50)]
            for m in sent:
                await (ws.send_bytes(m) if isinstance(m, bytes) else ws.send_str(m))
            got = []
            for _ in sent:
                msg = await ws.receive(timeout=10)
                got.append(msg.data)
                assert msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY)
            return sent, got

    sent, got = run(go())
    assert got == sent


def test_20_mb_each_way_with_the_limit_raised_and_1009_above_it(start_proxy):
    proxy = start_proxy(["--websocket-max-message-size", str(30 * MiB)])
    big = os.urandom(20 * MiB)

    async def go():
        async with aiohttp.ClientSession() as s, s.ws_connect(ws_url(proxy), max_msg_size=0) as ws:
            await ws.send_bytes(big)  # 20 MB up
            back = await ws.receive(timeout=60)  # and 20 MB down
            assert back.type == aiohttp.WSMsgType.BINARY and back.data == big
            await ws.send_str("send 1 " + str(20 * MiB))  # 20 MB made by the app
            made = await ws.receive(timeout=60)
            assert len(made.data) == 20 * MiB
            async with s.ws_connect(ws_url(proxy), max_msg_size=0) as ws:
                # Over the limit, client to app. The proxy refuses as soon as it reads the frame's
                # length and drops the connection, so a client reads while it sends, as browsers do.
                sending = asyncio.ensure_future(ws.send_bytes(os.urandom(31 * MiB)))
                msg = await ws.receive(timeout=60)
                assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1009, msg
                await asyncio.gather(sending, return_exceptions=True)
            async with s.ws_connect(ws_url(proxy), max_msg_size=0) as ws:
                await ws.send_str("send 1 " + str(31 * MiB))  # over the limit, app to client
                msg = await ws.receive(timeout=60)
                assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1009, msg

    run(go())


def test_the_app_chooses_the_subprotocol(proxy):
    async def go():
        async with (
            aiohttp.ClientSession() as s,
            s.ws_connect(ws_url(proxy), protocols=("first", "second")) as ws,
        ):
            return ws.protocol

    # The echo app picks the last one offered; a proxy deciding by itself would pick "first".
    assert run(go()) == "second"


def test_close_code_and_reason_pass_both_ways(proxy):
    async def go():
        async with aiohttp.ClientSession() as s, s.ws_connect(ws_url(proxy)) as ws:
            await ws.send_str("close-me")
            msg = await ws.receive(timeout=10)
            assert msg.type == aiohttp.WSMsgType.CLOSE
            assert (msg.data, msg.extra) == (4001, "app says bye")
            async with s.ws_connect(ws_url(proxy)) as ws:
                await ws.send_str("hi")
                await ws.receive(timeout=10)
                await ws.close(code=4002, message=b"client says bye")

    run(go())
    wait_for(
        lambda: proxy.get("last-close").json().get("code") == 4002,
        10,
        what="the app to see the client's close code",
    )
    assert proxy.get("last-close").json()["reason"] == "client says bye"


def test_pings_are_answered(proxy):
    async def go():
        async with aiohttp.ClientSession() as s, s.ws_connect(ws_url(proxy), autoping=False) as ws:
            await ws.ping(b"are you there")
            msg = await ws.receive(timeout=10)
            return msg.type, msg.data

    assert run(go()) == (aiohttp.WSMsgType.PONG, b"are you there")


def test_idle_websocket_gets_keepalive_pings(start_proxy):
    proxy = start_proxy(["--websocket-ping-interval", "0.5"])

    async def go():
        async with aiohttp.ClientSession() as s, s.ws_connect(ws_url(proxy), autoping=False) as ws:
            msg = await ws.receive(timeout=10)
            return msg.type

    assert run(go()) == aiohttp.WSMsgType.PING


def test_slow_reader_does_not_make_the_proxy_buffer(proxy):
    count, size = 200, MiB

    async def go():
        async with aiohttp.ClientSession() as s, s.ws_connect(ws_url(proxy), max_msg_size=0) as ws:
            baseline = peak_rss_kib(proxy.pid)
            await ws.send_str(f"send {count} {size}")
            first = await ws.receive(timeout=10)
            assert len(first.data) == size
            # Read nothing for a while: the app keeps writing, the proxy must not hoard.
            await asyncio.sleep(3)
            grown = (peak_rss_kib(proxy.pid) - baseline) / 1024
            received = 1
            while received < count:
                msg = await ws.receive(timeout=30)
                assert len(msg.data) == size
                received += 1
            return grown

    grown = run(go())
    assert grown < 48, f"the proxy grew by {grown:.0f} MiB for a slow reader of 200 MiB"


def test_50_concurrent_websockets(proxy):
    async def one(s, i):
        async with s.ws_connect(ws_url(proxy)) as ws:
            for j in range(5):
                await ws.send_str(f"{i}-{j}")
                msg = await ws.receive(timeout=20)
                assert msg.data == f"{i}-{j}"
            return True

    async def go():
        async with aiohttp.ClientSession() as s:
            return await asyncio.gather(*(one(s, i) for i in range(50)))

    assert all(run(go()))


def test_websocket_as_the_very_first_request_waits_for_the_app(start_proxy):
    proxy = start_proxy(
        app=[sys.executable, ECHO_APP, "{port}", "--delay-start", "2"], wait="listening"
    )

    async def go():
        async with aiohttp.ClientSession() as s, s.ws_connect(ws_url(proxy)) as ws:
            await ws.send_str("first")
            return (await ws.receive(timeout=20)).data

    assert run(go()) == "first"


def test_raw_socket_proxy_bridges_websocket_to_tcp(start_proxy):
    proxy = start_proxy(
        ["--raw-socket-proxy"], app=[sys.executable, str(APPS / "tcp_echo.py"), "{port}"]
    )

    async def go():
        async with (
            aiohttp.ClientSession() as s,
            s.ws_connect(ws_url(proxy, ""), protocols=("binary",)) as ws,
        ):
            assert ws.protocol == "binary"
            await ws.send_bytes(b"\x00raw bytes\xff")
            got = b""
            while len(got) < 11:
                got += (await ws.receive(timeout=10)).data
            await ws.send_str("text becomes bytes")
            more = b""
            while len(more) < 18:
                more += (await ws.receive(timeout=10)).data
            return got, more

    got, more = run(go())
    assert got == b"\x00raw bytes\xff"
    assert more == b"text becomes bytes"
    assert proxy.get("").status == 405


def test_unix_socket_app_with_http_and_websocket_in_a_private_directory(start_proxy):
    proxy = start_proxy(
        ["--unix-socket"], app=[sys.executable, ECHO_APP, "{port}", "--unix", "{unix_socket}"]
    )
    match = re.search(r"Starting the app on socket (\S+):", proxy.log())
    assert match, proxy.log()
    socket_path = match.group(1)
    directory = os.path.dirname(socket_path)
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    assert stat.S_ISSOCK(os.stat(socket_path).st_mode)
    assre = re.search(r"echo app argv: \[\"0\"", proxy.log())
    assert assre, "{port} must be 0 in unix-socket mode"

    assert proxy.get("echo?x=1").json()["uri"] == "/echo?x=1"

    async def go():
        async with aiohttp.ClientSession() as s, s.ws_connect(ws_url(proxy)) as ws:
            await ws.send_str("over the socket")
            return (await ws.receive(timeout=10)).data

    assert run(go()) == "over the socket"
    assert proxy.stop() == 0
    assert not os.path.exists(directory)


def test_raw_socket_proxy_over_a_unix_socket(start_proxy):
    proxy = start_proxy(
        ["--raw-socket-proxy", "--unix-socket"],
        app=[sys.executable, str(APPS / "tcp_echo.py"), "--unix", "{unix_socket}"],
    )

    async def go():
        async with aiohttp.ClientSession() as s, s.ws_connect(ws_url(proxy, "")) as ws:
            await ws.send_bytes(b"via unix")
            return (await ws.receive(timeout=10)).data

    assert run(go()) == b"via unix"


def test_20_concurrent_event_streams_and_a_small_get_still_answers(proxy):
    conns = []
    try:
        for _ in range(20):
            conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=20)
            conn.request(
                "GET", proxy.prefix + "sse?n=1000&gap=0.5", headers={"Accept": "text/event-stream"}
            )
            response = conn.getresponse()
            assert response.status == 200
            assert response.readline() == b"data: 0\n"
            conns.append(conn)
        # 20 streams are open and flowing; an ordinary request is not queued behind them.
        small = proxy.get("echo", timeout=5)
        assert small.status == 200
    finally:
        for conn in conns:
            conn.close()


def test_foreign_origin_is_refused_even_without_auth(proxy):
    async def attempt(headers):
        try:
            async with aiohttp.ClientSession() as s, s.ws_connect(ws_url(proxy), headers=headers):
                return "open"
        except aiohttp.WSServerHandshakeError as e:
            return e.status

    same = f"http://127.0.0.1:{proxy.port}"
    assert run(attempt({"Origin": same})) == "open"
    assert run(attempt({"Origin": "https://evil.example.org"})) == 403
    assert run(attempt({"Origin": same, "Sec-Fetch-Site": "cross-site"})) == 403
