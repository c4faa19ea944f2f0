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


# A websocket app written by hand, to see what the proxy sends it and what passes unchanged.
RAW_WS_APP = r"""
import asyncio, base64, hashlib, sys

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def frame(opcode, payload, fin=True):
    return bytes([(0x80 if fin else 0) | opcode, len(payload)]) + payload


async def serve(reader, writer):
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    headers = {}
    for line in head.split("\r\n")[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    if headers.get("upgrade", "").lower() != "websocket":
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()
        return
    key = headers["sec-websocket-key"].encode()
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()
    chosen = headers["sec-websocket-protocol"].split(",")[-1].strip()
    writer.write(
        (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: {chosen}\r\n"
            "Set-Cookie: app-cookie=1; Path=/\r\nSet-Cookie: jupyterhub-session-id=evil; Path=/\r\n"
            "\r\n"
        ).encode()
    )
    # One message in three fragments, with a ping of the app's own in between.
    writer.write(frame(1, b"frag", fin=False) + frame(0, b"ment", fin=False))
    writer.write(frame(9, b"app ping") + frame(0, b"ed", fin=True))
    extensions = headers.get("sec-websocket-extensions", "none")
    writer.write(frame(1, f"extensions: {extensions}".encode()))
    await writer.drain()
    # Then say what each frame that arrives looks like: opcode, masked, payload length.
    while True:
        try:
            first, second = await reader.readexactly(2)
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        n = second & 0x7F
        if n == 126:
            n = int.from_bytes(await reader.readexactly(2), "big")
        elif n == 127:
            n = int.from_bytes(await reader.readexactly(8), "big")
        key = await reader.readexactly(4) if second & 0x80 else bytes(4)
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(await reader.readexactly(n)))
        if payload == b"hang up":  # without a close frame
            writer.close()
            return
        report = f"{first & 0x0F} masked={bool(second & 0x80)} {n}".encode()
        writer.write(frame(1, report))
        await writer.drain()
        if first & 0x0F == 8:
            writer.close()
            return


async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", int(sys.argv[1]))
    async with server:
        await server.serve_forever()


asyncio.run(main())
"""


class RawWs:
    """A websocket client over a plain socket, to see frames as they arrive."""

    def __init__(self, port: int, path: str, headers: str = ""):
        import base64
        import socket

        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n"
            f"{headers}\r\n".encode()
        )
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self._more()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        self.head = head.decode("latin-1")

    def _more(self) -> None:
        data = self.sock.recv(65536)
        assert data, "the proxy closed the connection"
        self.buffer += data

    def _take(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self._more()
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def frame(self) -> tuple[bool, int, bytes]:
        first, second = self._take(2)
        assert second & 0x80 == 0, "a frame to the client must not be masked"
        n = second & 0x7F
        if n >= 126:
            n = int.from_bytes(self._take(2 if n == 126 else 8), "big")
        return bool(first & 0x80), first & 0x0F, self._take(n)

    def send(self, opcode: int, payload: bytes, fin: bool = True) -> None:
        key = os.urandom(4)
        masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        head = bytes([(0x80 if fin else 0) | opcode, 0x80 | len(payload)])
        self.sock.sendall(head + key + masked)

    def close(self) -> None:
        self.sock.close()


def test_frames_pass_unchanged_and_the_handshake_carries_the_apps_answer(start_proxy, tmp_path):
    """Fragments and the app's own pings arrive as the app sent them (nothing is re-encoded);
    no extension is offered to the app; its subprotocol and cookies (not the hub's) reach the
    client; keepalive pings reach the app masked, as a client's frames must be."""
    app = tmp_path / "raw_ws_app.py"
    app.write_text(RAW_WS_APP)
    proxy = start_proxy(
        ["--websocket-ping-interval", "0.3"], app=[sys.executable, str(app), "{port}"]
    )
    ws = RawWs(
        proxy.port,
        proxy.prefix + "ws",
        "Sec-WebSocket-Protocol: one, two\r\n"
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
    )
    try:
        head = ws.head.lower()
        assert head.startswith("http/1.1 101")
        assert "sec-websocket-protocol: two" in head
        assert "set-cookie: app-cookie=1" in head
        assert "jupyterhub-session-id" not in head
        assert "sec-websocket-extensions" not in head
        assert ws.frame() == (False, 1, b"frag")
        assert ws.frame() == (False, 0, b"ment")
        assert ws.frame() == (True, 9, b"app ping")
        assert ws.frame() == (True, 0, b"ed")
        assert ws.frame() == (True, 1, b"extensions: none")
        ws.send(2, b"x" * 100)
        reports = []
        for _ in range(20):  # bounded: the first report, and keepalive pings on the way
            fin, opcode, payload = ws.frame()
            if opcode == 1:
                reports.append(payload.decode())
                if len(reports) == 2:
                    break
        # The client's frame, and a keepalive ping of the proxy's, both masked.
        assert reports[0] == "2 masked=True 100"
        assert reports[1] == "9 masked=True 0"
    finally:
        ws.close()


def test_frames_split_anywhere_or_coalesced_are_relayed_exactly(proxy):
    """The relay reads headers across reads: a message sent one byte at a time, and many
    messages in one write, come back exactly."""
    ws = RawWs(proxy.port, proxy.prefix + "ws")
    try:
        key = b"\x11\x22\x33\x44"
        payload = bytes(range(256)) * 3  # a 16-bit length
        masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        one = bytes([0x82, 0x80 | 126]) + len(payload).to_bytes(2, "big") + key + masked
        for i in range(0, 20):  # the header, byte by byte
            ws.sock.sendall(one[i : i + 1])
        ws.sock.sendall(one[20:])
        assert ws.frame() == (True, 2, payload)
        many = b""
        for i in range(100):
            text = f"message {i}".encode()
            many += bytes([0x81, 0x80 | len(text)]) + key
            many += bytes(b ^ key[j % 4] for j, b in enumerate(text))
        ws.sock.sendall(many)
        assert [ws.frame()[2] for _ in range(100)] == [f"message {i}".encode() for i in range(100)]
    finally:
        ws.close()


def test_a_fragmented_message_over_the_limit_closes_with_1009(start_proxy):
    """The limit counts a message's fragments together, not each frame alone."""
    proxy = start_proxy(["--websocket-max-message-size", "1000"])
    ws = RawWs(proxy.port, proxy.prefix + "ws")
    try:
        ws.send(2, b"a" * 100, fin=False)
        for _ in range(9):
            ws.send(0, b"b" * 100, fin=False)  # 1000 bytes: still fine
        ws.send(0, b"c", fin=True)  # 1001
        fin, opcode, payload = ws.frame()
        assert (opcode, int.from_bytes(payload[:2], "big")) == (8, 1009)
    finally:
        ws.close()
    wait_for(
        lambda: proxy.get("ws-open").json() == {"open": 0},
        10,
        what="the app's side to be closed",
    )
    assert proxy.get("last-close").json()["code"] == 1009


def test_an_app_gone_without_a_close_frame_closes_the_client_with_1011(start_proxy, tmp_path):
    app = tmp_path / "raw_ws_app.py"
    app.write_text(RAW_WS_APP)
    proxy = start_proxy(app=[sys.executable, str(app), "{port}"])
    ws = RawWs(proxy.port, proxy.prefix + "ws", "Sec-WebSocket-Protocol: one\r\n")
    try:
        for _ in range(5):  # the app's greeting
            ws.frame()
        ws.send(1, b"hang up")
        fin, opcode, payload = ws.frame()
        assert (opcode, int.from_bytes(payload[:2], "big")) == (8, 1011)
        ws.sock.settimeout(10)
        assert ws.sock.recv(100) == b"", "the proxy keeps the connection after its close"
    finally:
        ws.close()


def test_a_client_that_stops_answering_pings_is_let_go(start_proxy):
    """A client gone without a word (a vanished network) would hold the app's websocket until
    TCP gives up, minutes later; one that answers the pings stays."""
    proxy = start_proxy(["--websocket-ping-interval", "0.3"])
    silent = RawWs(proxy.port, proxy.prefix + "ws")  # reads nothing, answers nothing

    async def answering():
        async with aiohttp.ClientSession() as s, s.ws_connect(ws_url(proxy)) as ws:
            # aiohttp answers pings while it waits for a message: only pings come for a while.
            receiving = asyncio.ensure_future(ws.receive(timeout=10))
            await asyncio.sleep(2)
            assert not receiving.done()
            # By now the silent client's side is closed (1001: going away), not this one's.
            assert proxy.get("ws-open").json() == {"open": 1}
            assert proxy.get("last-close").json()["code"] == 1001
            await ws.send_str("still here")
            return (await receiving).data

    try:
        assert run(answering()) == "still here"
    finally:
        silent.close()
