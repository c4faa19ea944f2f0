"""A TCP echo server (no HTTP) for --raw-socket-proxy. Usage: tcp_echo.py PORT | --unix PATH"""

import asyncio
import os
import sys


async def echo(reader, writer):
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


async def main():
    pidfile = os.environ.get("TEST_PIDFILE")
    if pidfile:
        with open(pidfile, "a") as f:
            f.write(f"{os.getpid()}\n")
    if sys.argv[1] == "--unix":
        server = await asyncio.start_unix_server(echo, sys.argv[2])
    else:
        server = await asyncio.start_server(echo, "127.0.0.1", int(sys.argv[1]))
    print("tcp echo listening", flush=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())
