#!/usr/bin/python3
"""A local HTTP receiver for webhook tests on 127.0.0.1: appends each POST body as one line to --out.
With --hang it accepts connections and never answers (a receiver that blocks forever).
Prints "READY port=P"; exits when its parent goes away."""
import argparse
import asyncio
import os


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--out", required=True)
    parser.add_argument("--hang", action="store_true")
    args = parser.parse_args()

    async def handle(reader, writer):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            if args.hang:
                await reader.read()
                return
            length = 0
            for line in head.decode("latin-1").split("\r\n"):
                if line.lower().startswith("content-length:"):
                    length = int(line.split(":", 1)[1])
            body = await reader.readexactly(length)
            with open(args.out, "ab") as f:
                f.write(body.replace(b"\n", b" ") + b"\n")
            writer.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", args.port)
    print("READY port=%d" % server.sockets[0].getsockname()[1], flush=True)
    parent = os.getppid()
    while os.getppid() == parent:
        await asyncio.sleep(0.5)


if __name__ == "__main__":
    asyncio.run(main())
