#!/usr/bin/python3
"""Real RTSP test cameras on 127.0.0.1, served by GStreamer's RTSP server.

Open port (--port):   /normal  480p H.264, moving picture, 25 fps, 1 s GOP
                      /hd      1080p H.264, moving, 25 fps
                      /uhd     2160p (4K) H.264, moving, 25 fps, ~20 Mb/s (benchmark and high-bitrate test)
                      /mjpeg   480p MJPEG over RTP (full-range), moving, 15 fps
                      /frozen  480p H.264, still picture
                      /black   480p H.264, black picture
                      /dies    480p H.264, ten pictures (0.4 s), then end of stream
                      /onefps  480p H.264, moving, 1 fps (every picture a keyframe)
                      /longgop, /longgop-frozen  480p H.264 with a keyframe every 4 s, moving / frozen; shared
                               (one encoder for every client), so a probe joins mid-GOP while a viewer watches
                      /mjpeg-undecodable  MJPEG over RTP from libavcodec's own encoder (avenc_mjpeg) through
                               rtpjpegpay: FFmpeg decodes it only with errors ("error y=0 x=0"), filler pixels
                      /bframes 480p H.264 High with 3 B-frames and a B-pyramid (2 pictures reordered), 1 s GOP
                      /main10  640x360 HEVC Main10 (yuv420p10le), moving, 25 fps
                      /main10-black  the same, black
                      /yuv444p12  640x360 HEVC 4:4:4 12-bit, moving
                      /yuv422p10  640x360 HEVC 4:2:2 10-bit, moving
                      /aggregated  160x120 H.264 whose small pictures travel in aggregation packets (STAP-A:
                               access unit delimiter + slice; parameter sets), as many cameras send them
                      /cam0../camN-1 (with --fleet N) one shared 480p encoder behind N paths
Auth port (--auth-port): /normal again, only for user/password (Basic and Digest accepted).

IPv6 loopback (v6_port): /normal at rtsp://[::1]:V6/normal.

Prints "READY port=P auth_port=A v6_port=V6" once listening. Exits when its parent process goes away, so a test
that dies never leaves cameras behind. Run with /usr/bin/python3 (needs python3-gi from Debian).
"""
import argparse
import ctypes
import os
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

H265 = "x265enc tune=zerolatency speed-preset=ultrafast key-int-max=25 bitrate=800 ! rtph265pay name=pay0 pt=96 config-interval=1"
H264 = "x264enc tune=zerolatency speed-preset=ultrafast key-int-max={gop} bitrate={kbps} ! rtph264pay name=pay0 pt=96 config-interval=1"
PIPELINES = {
    "normal": "videotestsrc is-live=true pattern=smpte horizontal-speed=4 ! video/x-raw,width=640,height=480,framerate=25/1 ! " + H264.format(gop=25, kbps=800),
    "hd": "videotestsrc is-live=true pattern=smpte horizontal-speed=4 ! video/x-raw,width=1920,height=1080,framerate=25/1 ! " + H264.format(gop=25, kbps=3000),
    # Constant quantiser 10: ~50-60 Mb/s, what a 4K camera sends (issue #13 item 4).
    "uhd": "videotestsrc is-live=true pattern=smpte horizontal-speed=8 ! video/x-raw,width=3840,height=2160,framerate=25/1 ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25 pass=quant quantizer=10 ! rtph264pay name=pay0 pt=96 config-interval=1",
    "mjpeg": "videotestsrc is-live=true pattern=smpte horizontal-speed=4 ! video/x-raw,format=I420,width=640,height=480,framerate=15/1 ! jpegenc quality=70 ! rtpjpegpay name=pay0 pt=26",
    # Constant quantiser: a still input then decodes to identical pictures, as from a frozen encoder.
    "frozen": "videotestsrc num-buffers=1 pattern=smpte ! video/x-raw,width=640,height=480 ! imagefreeze is-live=true ! video/x-raw,framerate=25/1 ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25 pass=quant quantizer=25 ! rtph264pay name=pay0 pt=96 config-interval=1",
    # Ten pictures (0.4 s), then end of stream: a camera killed during the probe's sampling window.
    "dies": "videotestsrc is-live=true num-buffers=10 pattern=smpte horizontal-speed=4 ! video/x-raw,width=640,height=480,framerate=25/1 ! " + H264.format(gop=25, kbps=800),
    "black": "videotestsrc is-live=true pattern=black ! video/x-raw,width=640,height=480,framerate=25/1 ! " + H264.format(gop=25, kbps=200),
    # B-frames: the decoder reorders and holds a keyframe back until later pictures arrive (issue #13 item 9).
    "bframes": "videotestsrc is-live=true pattern=smpte horizontal-speed=4 ! video/x-raw,width=640,height=480,framerate=25/1 ! x264enc speed-preset=ultrafast bframes=3 b-adapt=false b-pyramid=true key-int-max=25 bitrate=800 ! video/x-h264,profile=high ! rtph264pay name=pay0 pt=96 config-interval=1",
    # Decodes only with errors; the filler pixels read as a black picture (issue #13 item 10).
    "mjpeg-undecodable": "videotestsrc is-live=true pattern=smpte ! video/x-raw,format=I420,width=640,height=480,framerate=15/1 ! avenc_mjpeg ! rtpjpegpay name=pay0 pt=26",
    "longgop": "videotestsrc is-live=true pattern=smpte horizontal-speed=4 ! video/x-raw,width=640,height=480,framerate=25/1 ! " + H264.format(gop=100, kbps=800),
    "longgop-frozen": "videotestsrc num-buffers=1 pattern=smpte ! video/x-raw,width=640,height=480 ! imagefreeze is-live=true ! video/x-raw,framerate=25/1 ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=100 pass=quant quantizer=25 ! rtph264pay name=pay0 pt=96 config-interval=1",
    "onefps": "videotestsrc is-live=true pattern=smpte horizontal-speed=40 ! video/x-raw,width=640,height=480,framerate=1/1 ! " + H264.format(gop=1, kbps=800),
    # 10- and 12-bit video decodes to 16-bit samples: luma read one byte per pixel was "black" (issue #13 item 1).
    "main10": "videotestsrc is-live=true pattern=smpte horizontal-speed=4 ! video/x-raw,width=640,height=360,framerate=25/1 ! videoconvert ! video/x-raw,format=I420_10LE ! " + H265,
    "main10-black": "videotestsrc is-live=true pattern=black ! video/x-raw,width=640,height=360,framerate=25/1 ! videoconvert ! video/x-raw,format=I420_10LE ! " + H265,
    "yuv444p12": "videotestsrc is-live=true pattern=smpte horizontal-speed=4 ! video/x-raw,width=640,height=360,framerate=25/1 ! videoconvert ! video/x-raw,format=Y444_12LE ! " + H265,
    "yuv422p10": "videotestsrc is-live=true pattern=smpte horizontal-speed=4 ! video/x-raw,width=640,height=360,framerate=25/1 ! videoconvert ! video/x-raw,format=I422_10LE ! " + H265,
    "aggregated": "videotestsrc is-live=true pattern=smpte horizontal-speed=4 ! video/x-raw,width=160,height=120,framerate=25/1 ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25 bitrate=100 aud=true ! rtph264pay name=pay0 pt=96 config-interval=1 aggregate-mode=zero-latency",
}


def factory(launch, shared=False):
    f = GstRtspServer.RTSPMediaFactory()
    f.set_launch("( " + launch + " )")
    f.set_shared(shared)
    # A live camera cannot seek: without this every new client's PLAY rewinds the shared stream.
    f.set_suspend_mode(GstRtspServer.RTSPSuspendMode.NONE)
    f.connect("media-configure", on_media_configure)
    return f


class FleetFactory(GstRtspServer.RTSPMediaFactory):
    """One media for every /camN path: GStreamer keys shared media by URL path, so without this each
    path would get its own encoder. With it, 10,000 paths cost one 480p encoder."""

    def do_gen_key(self, url):
        return "fleet"


def fleet_factory(launch):
    f = FleetFactory()
    f.set_launch("( " + launch + " )")
    f.set_shared(True)
    f.set_suspend_mode(GstRtspServer.RTSPSuspendMode.NONE)
    f.connect("media-configure", on_media_configure)
    return f


def on_media_configure(_factory, media):
    media.set_property("reusable", True)


def set_auth_methods(auth, methods):
    """Basic|Digest together is not expressible through gi (the enum is not a flags type): call C."""
    lib = ctypes.CDLL("libgstrtspserver-1.0.so.0")
    lib.gst_rtsp_auth_set_supported_methods.argtypes = [ctypes.c_void_p, ctypes.c_int]
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype = ctypes.c_void_p
    get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    lib.gst_rtsp_auth_set_supported_methods(get_pointer(auth.__gpointer__, None), methods)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--auth-port", type=int, default=0)
    parser.add_argument("--user", default="viewer")
    parser.add_argument("--password", default="s3cret-Pa55")
    parser.add_argument("--fleet", type=int, default=0)
    parser.add_argument("--paths", default=",".join(PIPELINES))
    args = parser.parse_args()

    Gst.init(None)
    wanted = [p for p in args.paths.split(",") if p]

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    for name in wanted:
        mounts.add_factory("/" + name, factory(PIPELINES[name], shared=name.startswith("longgop")))
    if args.fleet:
        shared = fleet_factory(PIPELINES["normal"])
        for i in range(args.fleet):
            mounts.add_factory("/cam%d" % i, shared)
    server_id = server.attach(None)
    if not server_id:
        print("cannot listen", file=sys.stderr)
        sys.exit(1)

    # Authenticated paths live on their own server with no default token, so they answer 401 (not 404).
    auth_server = GstRtspServer.RTSPServer()
    auth_server.set_address("127.0.0.1")
    auth_server.set_service(str(args.auth_port))
    auth = GstRtspServer.RTSPAuth()
    token = GstRtspServer.RTSPToken()
    token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "viewer")
    basic = GstRtspServer.RTSPAuth.make_basic(args.user, args.password)
    auth.add_basic(basic, token)
    auth.add_digest(args.user, args.password, token)
    set_auth_methods(auth, 1 | 2)  # GST_RTSP_AUTH_BASIC | GST_RTSP_AUTH_DIGEST
    auth_server.set_auth(auth)
    permissions = GstRtspServer.RTSPPermissions()
    permissions.add_role("viewer")
    permissions.add_permission_for_role("viewer", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS, True)
    permissions.add_permission_for_role("viewer", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, True)
    protected = factory(PIPELINES["normal"])
    protected.add_role_from_structure(permissions.get_role("viewer"))
    auth_server.get_mount_points().add_factory("/normal", protected)
    if not auth_server.attach(None):
        print("cannot listen (auth)", file=sys.stderr)
        sys.exit(1)

    # The same camera on the IPv6 loopback (rtsp://[::1]:PORT/normal); v6_port=0 when IPv6 is off.
    v6_server = GstRtspServer.RTSPServer()
    v6_server.set_address("::1")
    v6_server.set_service("0")
    v6_server.get_mount_points().add_factory("/normal", factory(PIPELINES["normal"]))
    v6_port = v6_server.get_bound_port() if v6_server.attach(None) else 0

    print("READY port=%d auth_port=%d v6_port=%d" % (server.get_bound_port(), auth_server.get_bound_port(), v6_port), flush=True)

    loop = GLib.MainLoop()
    parent = os.getppid()

    def watch_parent():
        if os.getppid() != parent:
            loop.quit()
            return False
        return True

    GLib.timeout_add(500, watch_parent)
    signal.signal(signal.SIGTERM, lambda *_: loop.quit())
    signal.signal(signal.SIGINT, lambda *_: loop.quit())
    loop.run()


if __name__ == "__main__":
    main()
