#!/usr/bin/python3
"""Picture-health test cameras on 127.0.0.1 (GStreamer RTSP server): a static textured scene with live
sensor noise, and the ways a camera's picture goes wrong while it still "connects".

Variants (each one pipeline; a path serves one variant at a time):
  scene       320x240 H.264 10 fps: the scene with live sensor noise (a healthy static camera)
  night       the same scene darker and flatter (videobalance), noise on top: day/night swing
  clock       the noisy scene with an on-screen clock (clockoverlay) ticking: healthy
  moved       the view shifted and zoomed (a crop of the scene, scaled back): camera moved
  blurred     the scene through gaussianblur, noise on top: dirty or out-of-focus lens
  covered     the left half covered by a uniform grey board, noise on top: obstructed
  frozen-clock  one still picture (imagefreeze, constant quantiser) with a ticking clockoverlay: frozen encoder
  hd          1920x1080 H.264 moving test pattern; sd: the same at 640x480 (a camera reset to defaults)
  av          640x480 H.264 + PCMA audio; audio: the audio track alone (video encoder died)

Paths: --serve /a=scene,/b=moved,... . Each line "serve /a VARIANT" on stdin swaps what /a serves from the
next client on (a restart of the path with other caps or another view). Prints "READY port=P" once
listening, "SWAPPED /a VARIANT" after each swap. Exits when its parent goes away.
"""
import argparse
import os
import random
import shutil
import signal
import sys
import tempfile
import threading

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def write_scene(path, width=640, height=480, seed=7):
    """A deterministic textured scene (sky, buildings with windows, a road, poles) as a binary PGM."""
    rnd = random.Random(seed)
    img = bytearray(width * height)
    for y in range(height):
        sky = 200 - y * 60 // height
        for x in range(width):
            img[y * width + x] = sky
    def rect(x0, y0, x1, y1, value):
        for y in range(max(0, y0), min(height, y1)):
            row = y * width
            for x in range(max(0, x0), min(width, x1)):
                img[row + x] = value
    x = 0
    while x < width:
        w = rnd.randint(40, 110)
        top = rnd.randint(height // 5, height // 2)
        shade = rnd.randint(50, 150)
        rect(x, top, x + w - 4, height * 3 // 4, shade)
        for wy in range(top + 10, height * 3 // 4 - 12, 22):
            for wx in range(x + 6, x + w - 14, 16):
                rect(wx, wy, wx + 8, wy + 12, rnd.choice([30, 230, shade + 40]))
        x += w
    rect(0, height * 3 // 4, width, height, 70)
    for lane in range(0, width, 60):
        rect(lane, height * 7 // 8, lane + 30, height * 7 // 8 + 6, 220)
    for px in range(25, width, 140):
        rect(px, height // 3, px + 5, height * 3 // 4, 20)
    # Fine texture (brick, foliage): what sharpness measures.
    for i in range(len(img)):
        img[i] = max(0, min(255, img[i] + rnd.randint(-12, 12)))
    with open(path, "wb") as f:
        f.write(b"P5\n%d %d\n255\n" % (width, height))
        f.write(bytes(img))
    return img


def write_moved(path, img, width=640, height=480, left=110, top=80):
    """The same scene seen by a camera that turned and zoomed: a crop of it, scaled back to full size."""
    out = bytearray(width * height)
    cw, ch = width - left, height - top
    for y in range(height):
        src = (top + y * ch // height) * width + left
        row = y * width
        for x in range(width):
            out[row + x] = img[src + x * cw // width]
    with open(path, "wb") as f:
        f.write(b"P5\n%d %d\n255\n" % (width, height))
        f.write(bytes(out))


def variants(scene, moved_scene=None):
    def still_with(pre, source=None):
        # What happens in front of the sensor is applied once, to the still scene, before it goes live.
        return ("filesrc location=%s ! pnmdec ! videoconvert ! videoscale ! video/x-raw,width=320,height=240 ! %simagefreeze is-live=true ! "
                "videoconvert ! video/x-raw,format=I420,width=320,height=240,framerate=10/1") % (source or scene, pre)
    still = still_with("")
    # 320x240 at 10 fps: a test runs many of these at once on 2 cores, next to timing-sensitive tests.
    noise = "videotestsrc is-live=true pattern=snow ! video/x-raw,format=I420,width=320,height=240,framerate=10/1"
    enc = "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=10 bitrate=500 ! rtph264pay name=pay0 pt=96 config-interval=1"
    quant = "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=10 pass=quant quantizer=25 ! rtph264pay name=pay0 pt=96 config-interval=1"

    def noisy(chain):
        # The picture (after what happened to it in front of the sensor), then sensor noise at 3 %.
        return "compositor name=c background=black min-upstream-latency=500000000 latency=300000000 sink_1::alpha=0.03 ! video/x-raw,format=I420 ! " + enc + " " + chain + " ! c.sink_0 " + noise + " ! c.sink_1"

    clock = "clockoverlay time-format=\"%H:%M:%S\" valignment=bottom halignment=right font-desc=\"Sans 10\""
    cover = ("compositor name=k background=black min-upstream-latency=500000000 latency=300000000 sink_1::xpos=0 sink_1::ypos=0 ! video/x-raw,format=I420,width=320,height=240 ! videoconvert ! queue ! m.sink_0 "
             + still + " ! k.sink_0 videotestsrc is-live=true pattern=solid-color foreground-color=0xff8a8a8a ! "
             + "video/x-raw,format=I420,width=160,height=240,framerate=10/1 ! k.sink_1 ")
    moving = "videotestsrc is-live=true pattern=smpte horizontal-speed=4 ! video/x-raw,width=%d,height=%d,framerate=25/1 ! "
    return {
        "scene": noisy(still),
        "night": noisy(still_with("videobalance brightness=-0.15 contrast=0.6 ! ")),
        "clock": noisy(still + " ! " + clock),
        "moved": noisy(still_with("", moved_scene)),
        "blurred": noisy(still_with("gaussianblur sigma=3.5 ! videoconvert ! ")),
        "covered": "compositor name=m background=black min-upstream-latency=500000000 latency=300000000 sink_1::alpha=0.03 ! video/x-raw,format=I420 ! " + enc + " " + cover + noise + " ! m.sink_1",
        "frozen-clock": still + " ! " + clock + " ! " + quant,
        "hd": moving % (1920, 1080) + "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25 bitrate=3000 ! rtph264pay name=pay0 pt=96 config-interval=1",
        "sd": moving % (640, 480) + "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25 bitrate=800 ! rtph264pay name=pay0 pt=96 config-interval=1",
        "av": moving % (640, 480) + "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25 bitrate=800 ! rtph264pay name=pay0 pt=96 config-interval=1 "
              + "audiotestsrc is-live=true wave=sine ! audio/x-raw,rate=8000,channels=1 ! audioconvert ! alawenc ! rtppcmapay name=pay1 pt=8",
        "audio": "audiotestsrc is-live=true wave=sine ! audio/x-raw,rate=8000,channels=1 ! audioconvert ! alawenc ! rtppcmapay name=pay0 pt=8",
    }


def factory(launch):
    # One pipeline per client. Under load its first pictures may be composed before every input has
    # arrived (a dark frame with only the noise on it, as a damaged keyframe from a real camera): the
    # monitor must not take one such picture for a moved or covered camera. The compositors' background is
    # black, not GStreamer's default checkerboard: a checkerboard twice in a row is the same (wrong) view
    # twice, which the monitor rightly reports, and no healthy camera shows one (the false-alarm bench
    # found exactly that: two probes in a row joined during a pipeline's start under load).
    f = GstRtspServer.RTSPMediaFactory()
    f.set_launch("( " + launch + " )")
    f.set_shared(False)
    f.set_suspend_mode(GstRtspServer.RTSPSuspendMode.NONE)
    return f


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--serve", default="/scene=scene")
    args = parser.parse_args()
    Gst.init(None)
    folder = tempfile.mkdtemp(prefix="streampulse-pictures-")
    scene = os.path.join(folder, "scene.pgm")
    moved = os.path.join(folder, "moved.pgm")
    write_moved(moved, write_scene(scene))
    table = variants(scene, moved)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    for item in args.serve.split(","):
        path, variant = item.split("=")
        mounts.add_factory(path, factory(table[variant]))
    if not server.attach(None):
        print("cannot listen", file=sys.stderr)
        sys.exit(1)
    print("READY port=%d" % server.get_bound_port(), flush=True)
    loop = GLib.MainLoop()

    def swap(path, variant):
        mounts.remove_factory(path)
        mounts.add_factory(path, factory(table[variant]))
        print("SWAPPED %s %s" % (path, variant), flush=True)
        return False

    def read_commands():
        for line in sys.stdin:
            words = line.split()
            if len(words) == 3 and words[0] == "serve" and words[2] in table:
                GLib.idle_add(swap, words[1], words[2])
        GLib.idle_add(loop.quit)

    threading.Thread(target=read_commands, daemon=True).start()
    parent = os.getppid()

    def watch_parent():
        if os.getppid() != parent:
            loop.quit()
            return False
        return True

    GLib.timeout_add(500, watch_parent)
    signal.signal(signal.SIGTERM, lambda *_: loop.quit())
    loop.run()
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
