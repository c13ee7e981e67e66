#!/usr/bin/python3
"""A tiny RTSP responder on 127.0.0.1 for camera behaviour GStreamer cannot produce.

Paths on the main port (--port, printed):
  /silent        answers OPTIONS/DESCRIBE/SETUP/PLAY, then sends nothing
  /rtcp-only     same, then sends only RTCP sender reports (interleaved) every 200 ms
  /hangup        same, then closes the connection right after PLAY
  /status/NNN    answers DESCRIBE with RTSP status NNN (403, 454, 503, ...)
  /unsupported-transport   answers SETUP over TCP with 461
  /strict-digest every request but OPTIONS needs Digest authentication (--user/--password), parsed the way
                 live555 (the RTSP stack inside many cameras) parses it: only name="value" pairs count, and
                 the header is rejected unless its last pair parsed, so an unquoted algorithm=MD5 is a 401.
                 After PLAY it sends nothing (a quick probe is judged on DESCRIBE).
A second port (blackhole_port) accepts connections and never answers; a third (garbage_port) greets
with non-RTSP bytes and closes.

Prints "READY port=P blackhole_port=B garbage_port=G". Exits when its parent goes away.
"""
import argparse
import asyncio
import hashlib
import os
import re
import struct
import time

USER = "viewer"
PASSWORD = "s3cret-Pa55"
REALM = "LIVE555 Streaming Media"
NONCE = "a5f1c2e0d9b84f77"

SDP = (
    "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=fake\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
    "a=fmtp:96 packetization-mode=1;sprop-parameter-sets=Z0LAHtkDxWhAAAADAEAAAAwDxYuS,aMuMsg==\r\n"
    "a=control:track1\r\n"
)


async def read_request(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, url, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    length = int(headers.get("content-length", "0"))
    if length:
        await reader.readexactly(length)
    return method, url, headers


def reply(writer, cseq, status=200, reason="OK", extra=(), body=""):
    lines = ["RTSP/1.0 %d %s" % (status, reason), "CSeq: %s" % cseq] + list(extra)
    if body:
        lines += ["Content-Type: application/sdp", "Content-Length: %d" % len(body.encode())]
    writer.write(("\r\n".join(lines) + "\r\n\r\n" + body).encode())


def live555_digest_ok(method, header):
    """live555's parseAuthorizationHeader: `name="value"` pairs from the start; anything that is not such a
    pair (an unquoted value) stops the parse and the header counts only if nothing was left over."""
    if not header.startswith("Digest "):
        return False
    rest = header[len("Digest "):]
    fields = {}
    pair = re.compile(r'\s*([^=\s]+)="([^"]*)"\s*,?')
    while rest.strip():
        m = pair.match(rest)
        if not m:
            return False  # e.g. algorithm=MD5 without quotes: live555 ignores the whole header
        fields[m.group(1)] = m.group(2)
        rest = rest[m.end():]
    need = ("username", "realm", "nonce", "uri", "response")
    if any(k not in fields for k in need) or fields["realm"] != REALM or fields["nonce"] != NONCE:
        return False
    md5 = lambda t: hashlib.md5(t.encode()).hexdigest()
    ha1 = md5("%s:%s:%s" % (USER, REALM, PASSWORD))
    expected = md5("%s:%s:%s" % (ha1, NONCE, md5("%s:%s" % (method, fields["uri"]))))
    return fields["username"] == USER and fields["response"] == expected


async def handle(reader, writer):
    try:
        while True:
            method, url, headers = await read_request(reader)
            cseq = headers.get("cseq", "0")
            path = "/" + url.split("://", 1)[-1].split("/", 1)[-1].split("?")[0]
            base = path.split("/track")[0]
            if method == "OPTIONS":
                reply(writer, cseq, extra=["Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER"])
            elif base.startswith("/strict-digest") and not live555_digest_ok(method, headers.get("authorization", "")):
                reply(writer, cseq, 401, "Unauthorized", extra=['WWW-Authenticate: Digest realm="%s", nonce="%s"' % (REALM, NONCE)])
            elif base.startswith("/status/"):
                code = int(base.split("/")[2])
                reply(writer, cseq, code, "Test Status")
            elif method == "DESCRIBE":
                reply(writer, cseq, extra=["Content-Base: %s/" % url.rstrip("/")], body=SDP)
            elif method == "SETUP":
                transport = headers.get("transport", "")
                if base.startswith("/unsupported-transport"):
                    reply(writer, cseq, 461, "Unsupported Transport")
                elif "TCP" in transport:
                    reply(writer, cseq, extra=["Transport: RTP/AVP/TCP;unicast;interleaved=0-1", "Session: 12345678;timeout=60"])
                else:
                    reply(writer, cseq, 461, "Unsupported Transport")
            elif method == "PLAY":
                reply(writer, cseq, extra=["Session: 12345678", "Range: npt=0.000-"])
                await writer.drain()
                if base.startswith("/hangup"):
                    writer.close()
                    return
                if base.startswith("/rtcp-only"):
                    while True:
                        now = time.time()
                        sr = struct.pack("!BBHIIIIII", 0x80, 200, 6, 0x1234, int(now) + 2208988800, 0, 0, 0, 0)
                        writer.write(b"$" + bytes([1]) + struct.pack("!H", len(sr)) + sr)
                        await writer.drain()
                        await asyncio.sleep(0.2)
                # /silent: keep the connection open and say nothing.
                await reader.read()
                return
            elif method == "TEARDOWN":
                reply(writer, cseq)
            else:
                reply(writer, cseq, 200, "OK")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def blackhole(reader, writer):
    await reader.read()
    writer.close()


async def garbage(reader, writer):
    writer.write(b"SSH-2.0-OpenSSH_9.2 definitely not rtsp\r\n")
    await writer.drain()
    writer.close()


async def main():
    global USER, PASSWORD
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--user", default=USER)
    parser.add_argument("--password", default=PASSWORD)
    args = parser.parse_args()
    USER, PASSWORD = args.user, args.password
    server = await asyncio.start_server(handle, "127.0.0.1", args.port)
    hole = await asyncio.start_server(blackhole, "127.0.0.1", 0)
    junk = await asyncio.start_server(garbage, "127.0.0.1", 0)
    print("READY port=%d blackhole_port=%d garbage_port=%d" % (
        server.sockets[0].getsockname()[1], hole.sockets[0].getsockname()[1], junk.sockets[0].getsockname()[1]), flush=True)
    parent = os.getppid()
    while os.getppid() == parent:
        await asyncio.sleep(0.5)


if __name__ == "__main__":
    asyncio.run(main())
