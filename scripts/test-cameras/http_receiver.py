#!/usr/bin/python3
"""A local HTTP(S) receiver for webhook tests on 127.0.0.1: appends each POST body as one line to --out.
With --hang it accepts connections and never answers (a receiver that blocks forever).
With --fail N it answers the first N POSTs with 500 (a receiver that is down for a while).
With --cert/--key it speaks TLS (a self-signed chain made by the test).
Prints "READY port=P"; exits when its parent goes away."""
import argparse
import asyncio
import os
import ssl


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--out", required=True)
    parser.add_argument("--hang", action="store_true")
    parser.add_argument("--fail", type=int, default=0)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    args = parser.parse_args()
    failures = {"left": args.fail}

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
            if failures["left"] > 0:
                failures["left"] -= 1
                writer.write(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            else:
                with open(args.out, "ab") as f:
                    f.write(body.replace(b"\n", b" ") + b"\n")
                writer.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    context = None
    if args.cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.cert, args.key)
    server = await asyncio.start_server(handle, "127.0.0.1", args.port, ssl=context)
    print("READY port=%d" % server.sockets[0].getsockname()[1], flush=True)
    parent = os.getppid()
    while os.getppid() == parent:
        await asyncio.sleep(0.5)


if __name__ == "__main__":
    asyncio.run(main())
