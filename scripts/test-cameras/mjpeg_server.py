#!/usr/bin/python3
"""A multi-client MJPEG-over-HTTP test camera on 127.0.0.1, serving JPEGs pre-rendered by ffmpeg.

Streams (multipart/x-mixed-replace, 10 fps unless noted):
  /normal      640x480 moving picture, boundary with Content-Length, CRLF
  /hd          1920x1080 moving, quoted boundary with leading --, no Content-Length
  /lf          640x480, bare-LF line endings, no Content-Length
  /frozen      the same JPEG again and again
  /black       a black picture
  /stall       headers, then silence
  /onefps      /normal at 1 frame per second
  /dies        three frames of /normal (0.3 s), then the connection closes: a camera killed mid-window
  /length-short, /length-long
               /normal whose first part declares a Content-Length 100 bytes too small / 300 too large (VLC's
               first part is wrong that way); the reader must resynchronise at the next boundary
  /auth        /normal behind Basic auth (--user/--password)
  /snapshot    one image/jpeg
  /cam/N       /normal under any number (fleet benchmark)
Hostile:
  /noboundary  multipart headers, then endless bytes with no boundary
  /huge        a part declaring and sending 64 MiB
  /huge-nolength  a part with no Content-Length that never ends
  /endless-header  response headers that never end
  /drip        headers, then one byte per second
  /wrongtype   text/html
  /truncated   parts whose JPEG lacks its end marker
  /corrupt     parts that are not JPEG at all
  /redirect    302 to /normal
  /ansi        500 with ANSI escapes in the reason phrase
  /redirect-away  302 to http://127.0.0.2:PORT/normal (another host: the server also listens there)
  /status/NNN  that HTTP status

Prints "READY port=P". Exits when its parent goes away.
"""
import argparse
import asyncio
import base64
import glob
import os
import subprocess
import tempfile

FRAMES = {}


def render(cache):
    """Renders the test pictures once with ffmpeg (kept in `cache` between runs)."""
    os.makedirs(cache, exist_ok=True)
    specs = {
        "normal": ("testsrc2=size=640x480:rate=10", 20),
        "hd": ("testsrc2=size=1920x1080:rate=10", 20),
        "black": ("color=c=black:size=640x480:rate=10", 1),
    }
    for name, (source, count) in specs.items():
        pattern = os.path.join(cache, name + "-%03d.jpg")
        if len(glob.glob(os.path.join(cache, name + "-*.jpg"))) < count:
            subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", source, "-frames:v", str(count),
                            "-q:v", "5", "-pix_fmt", "yuvj420p", pattern], check=True)
        FRAMES[name] = [open(p, "rb").read() for p in sorted(glob.glob(os.path.join(cache, name + "-*.jpg")))][:count]
    FRAMES["frozen"] = FRAMES["normal"][:1]


def head(writer, status=200, reason="OK", headers=()):
    lines = ["HTTP/1.1 %d %s" % (status, reason), "Server: streampulse-test-camera", "Connection: close"] + list(headers)
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())


async def stream(writer, frames, boundary="frame", header_boundary=None, length=True, eol=b"\r\n", fps=10, mangle=None, count=None,
                 first_length_error=0):
    head(writer, headers=["Content-Type: multipart/x-mixed-replace; boundary=%s" % (header_boundary or boundary),
                          "Cache-Control: no-cache"])
    i = 0
    while True:
        jpeg = frames[i % len(frames)]
        if mangle:
            jpeg = mangle(jpeg)
        part = b"--" + boundary.encode() + eol + b"Content-Type: image/jpeg" + eol
        if length:
            declared = len(jpeg) + (first_length_error if i == 0 else 0)
            part += b"Content-Length: " + str(declared).encode() + eol
        writer.write(part + eol + jpeg + eol)
        await writer.drain()
        i += 1
        if count is not None and i >= count:
            return  # the camera dies: the connection closes
        await asyncio.sleep(1 / fps)


async def handle(reader, writer, args):
    try:
        request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        lines = request.decode("latin-1").split("\r\n")
        path = lines[0].split(" ")[1].split("?")[0]
        headers = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in lines[1:] if ":" in l}
        normal = FRAMES["normal"]
        if path == "/normal" or path.startswith("/cam/"):
            await stream(writer, normal)
        elif path == "/hd":
            await stream(writer, FRAMES["hd"], boundary="--hdboundary", header_boundary='"--hdboundary"', length=False)
        elif path == "/lf":
            await stream(writer, normal, boundary="lfboundary", length=False, eol=b"\n")
        elif path == "/frozen":
            await stream(writer, FRAMES["frozen"])
        elif path == "/dies":
            await stream(writer, normal, count=3)
        elif path == "/onefps":
            await stream(writer, normal, fps=1)
        elif path == "/length-short":
            await stream(writer, normal, first_length_error=-100)
        elif path == "/length-long":
            await stream(writer, normal, first_length_error=300)
        elif path == "/black":
            await stream(writer, FRAMES["black"])
        elif path == "/auth":
            expected = "Basic " + base64.b64encode(("%s:%s" % (args.user, args.password)).encode()).decode()
            if headers.get("authorization") != expected:
                head(writer, 401, "Unauthorized", ['WWW-Authenticate: Basic realm="camera"', "Content-Length: 0"])
            else:
                await stream(writer, normal)
        elif path == "/snapshot":
            head(writer, headers=["Content-Type: image/jpeg", "Content-Length: %d" % len(normal[0])])
            writer.write(normal[0])
        elif path == "/stall":
            head(writer, headers=["Content-Type: multipart/x-mixed-replace; boundary=frame"])
            await writer.drain()
            await reader.read()
        elif path == "/noboundary":
            head(writer, headers=["Content-Type: multipart/x-mixed-replace; boundary=frame"])
            junk = os.urandom(65536).replace(b"--", b"~~")
            while True:
                writer.write(junk)
                await writer.drain()
                await asyncio.sleep(0)  # drain() does not yield while the reader keeps up: let other cameras run
        elif path == "/huge":
            head(writer, headers=["Content-Type: multipart/x-mixed-replace; boundary=frame"])
            size = 64 * 1024 * 1024
            writer.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % size)
            chunk = b"\xff" * 65536
            for _ in range(size // len(chunk)):
                writer.write(chunk)
                await writer.drain()
                await asyncio.sleep(0)  # drain() does not yield while the reader keeps up: let other cameras run
        elif path == "/huge-nolength":
            head(writer, headers=["Content-Type: multipart/x-mixed-replace; boundary=frame"])
            writer.write(b"--frame\r\nContent-Type: image/jpeg\r\n\r\n\xff\xd8")
            chunk = b"\x00" * 65536
            while True:
                writer.write(chunk)
                await writer.drain()
                await asyncio.sleep(0)  # drain() does not yield while the reader keeps up: let other cameras run
        elif path == "/endless-header":
            writer.write(b"HTTP/1.1 200 OK\r\n")
            while True:
                writer.write(b"X-Padding: " + b"a" * 1000 + b"\r\n")
                await writer.drain()
                await asyncio.sleep(0.001)
        elif path == "/drip":
            head(writer, headers=["Content-Type: multipart/x-mixed-replace; boundary=frame"])
            data = b"--frame\r\nContent-Type: image/jpeg\r\n\r\n" + normal[0]
            for byte in data:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(1)
        elif path == "/wrongtype":
            body = b"<html><body>Login</body></html>"
            head(writer, headers=["Content-Type: text/html", "Content-Length: %d" % len(body)])
            writer.write(body)
        elif path == "/truncated":
            await stream(writer, normal, mangle=lambda j: j[: len(j) // 2])
        elif path == "/corrupt":
            await stream(writer, normal, mangle=lambda j: b"GIF89a" + j[6:])
        elif path == "/redirect":
            head(writer, 302, "Found", ["Location: /normal", "Content-Length: 0"])
        elif path == "/ansi":
            # A hostile camera's status text: ANSI colour escapes and a forged log line.
            head(writer, 500, "\x1b[31mBOOM\x1b[0m stream=other status=ok", ["Content-Length: 0"])
        elif path == "/redirect-away":
            # To another host (this server's second loopback address): refused unless the stream allows it.
            port = writer.get_extra_info("sockname")[1]
            head(writer, 302, "Found", [f"Location: http://127.0.0.2:{port}/normal", "Content-Length: 0"])
        elif path.startswith("/status/"):
            code = int(path.split("/")[2])
            head(writer, code, "Test Status", ["Content-Length: 0"])
        else:
            head(writer, 404, "Not Found", ["Content-Length: 0"])
        await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError, ValueError, IndexError):
        pass
    finally:
        writer.close()


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--user", default="viewer")
    parser.add_argument("--password", default="s3cret-Pa55")
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "streampulse-test-jpegs"))
    args = parser.parse_args()
    render(args.cache)
    server = await asyncio.start_server(lambda r, w: handle(r, w, args), "127.0.0.1", args.port, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    # The same cameras on a second loopback address: "another host" for the redirect tests.
    await asyncio.start_server(lambda r, w: handle(r, w, args), "127.0.0.2", port, backlog=64)
    # And on the IPv6 loopback (http://[::1]:PORT/...), when the machine has it.
    v6 = 1
    try:
        await asyncio.start_server(lambda r, w: handle(r, w, args), "::1", port, backlog=64)
    except OSError:
        v6 = 0
    print("READY port=%d v6=%d" % (port, v6), flush=True)
    parent = os.getppid()
    while os.getppid() == parent:
        await asyncio.sleep(0.5)


if __name__ == "__main__":
    asyncio.run(main())
