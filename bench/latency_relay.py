#!/usr/bin/env python3
"""A TCP relay in front of an S3 endpoint that delays each response by a
fixed time, as a real S3's first-byte latency would (about 20 ms).

    latency_relay.py LISTEN_PORT UPSTREAM_HOST:PORT DELAY_MS

On each connection, the first bytes the upstream sends after the client
has sent a request are held DELAY_MS before they are passed on; the rest
of that response streams at once. Loopback only; it runs until killed.
"""
import asyncio
import sys


async def pipe(reader, writer, before=None):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            if before is not None:
                await before()
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def serve(upstream_host, upstream_port, delay):
    async def handle(client_reader, client_writer):
        try:
            up_reader, up_writer = await asyncio.open_connection(upstream_host, upstream_port)
        except OSError:
            client_writer.close()
            return
        # Set when the client sends a request, cleared by the first bytes
        # of the answer, which wait `delay` first.
        asked = asyncio.Event()

        async def requested():
            asked.set()

        async def answering():
            if asked.is_set():
                asked.clear()
                await asyncio.sleep(delay)

        await asyncio.gather(
            pipe(client_reader, up_writer, requested),
            pipe(up_reader, client_writer, answering),
        )

    return handle


async def main():
    port, upstream, delay_ms = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    host, up_port = upstream.rsplit(":", 1)
    handle = await serve(host, int(up_port), delay_ms / 1000)
    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
