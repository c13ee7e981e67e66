#!/usr/bin/python3
"""False-alarm benchmark for picture health (issue #16), driven by scripts/bench-pictures.

Runs a real `streampulse serve` against healthy picture cameras (scripts/test-cameras/picture_server.py):
static scenes with live sensor noise, an on-screen clock, and exposure swings (each "swing" camera switches
between the day and the night version of its scene every --swing seconds), deep-probed every --deep seconds
for --minutes. Then counts, from the SQLite history, every deep result and every picture verdict. A healthy
fleet must produce none. Also prints the plugin's own cost of the picture analysis (grid + sharpness) per
deep probe, from `streampulse check --json` on a 1080p camera.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

PICTURE_REASONS = ("scene_changed", "obstructed", "blurred", "profile_changed", "low_bitrate", "low_fps", "frozen", "black", "no_video")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--plugins-dir", required=True)
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--deep", type=int, default=2, help="deep interval in seconds")
    ap.add_argument("--swing", type=int, default=45, help="seconds between day/night switches")
    ap.add_argument("--cost-probes", type=int, default=30)
    args = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cams = {"/day-a": "scene", "/day-b": "scene", "/clock-a": "clock", "/clock-b": "clock", "/swing-a": "scene", "/swing-b": "night"}
    server = subprocess.Popen(["/usr/bin/python3", root + "/scripts/test-cameras/picture_server.py", "--serve",
                               ",".join("%s=%s" % kv for kv in cams.items()) + ",/hd=hd"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = server.stdout.readline()
    port = int(line.split("port=")[1])
    work = tempfile.mkdtemp(prefix="streampulse-bench-pictures-")
    web = free_port()
    streams = "\n".join('  - { id: %s, url: "rtsp://127.0.0.1:%d%s" }' % (p.strip("/"), port, p) for p in cams)
    with open(work + "/config.yaml", "w") as f:
        f.write("settings: { interval: %ds, deep_interval: %ds, timeout: 8s, retries: 1, listen: \"127.0.0.1:%d\" }\nstreams:\n%s\n"
                % (args.deep, args.deep, web, streams))
    serve = subprocess.Popen([args.bin, "serve", "--config", work + "/config.yaml", "--data-dir", work + "/data",
                              "--plugins-dir", args.plugins_dir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # The picture cost, measured by the plugin itself on a 1080p picture (CPU time of grid + sharpness).
        costs = []
        for _ in range(args.cost_probes):
            out = subprocess.run([args.bin, "check", "rtsp://127.0.0.1:%d/hd" % port, "--json", "--plugins-dir", args.plugins_dir],
                                 capture_output=True, text=True)
            try:
                us = json.loads(out.stdout).get("image", {}).get("analysis_us")
            except ValueError:
                us = None
            if us is not None:
                costs.append(us)
        if costs:
            print("picture analysis cost at 1920x1080 (plugin CPU time, %d deep probes): median %.0f µs, max %.0f µs"
                  % (len(costs), statistics.median(costs), max(costs)))
        end = time.time() + args.minutes * 60
        day = True
        next_swing = time.time() + args.swing
        swings = 0
        while time.time() < end:
            time.sleep(1)
            if time.time() >= next_swing:
                day = not day
                server.stdin.write("serve /swing-a %s\nserve /swing-b %s\n" % ("scene" if day else "night", "night" if day else "scene"))
                server.stdin.flush()
                swings += 1
                next_swing += args.swing
        serve.send_signal(signal.SIGTERM)
        serve.wait(30)
        db = sqlite3.connect(work + "/data/streampulse.db")
        total = db.execute("SELECT COUNT(*) FROM results WHERE mode = 'deep'").fetchone()[0]
        by_reason = dict(db.execute("SELECT reason, COUNT(*) FROM results WHERE mode = 'deep' GROUP BY reason").fetchall())
        notes = db.execute("SELECT COUNT(*) FROM results WHERE message LIKE '%did not match the reference view%'").fetchone()[0]
        verdicts = sum(by_reason.get(r, 0) for r in PICTURE_REASONS)
        print("healthy cameras: %d (noise, OSD clock, day/night swings: %d switches) for %.1f min, deep every %d s"
              % (len(cams), swings, args.minutes, args.deep))
        print("deep probes: %d; by reason: %s" % (total, json.dumps(by_reason, sort_keys=True)))
        print("picture verdicts: %d (false alarms); single mismatches held for confirmation: %d" % (verdicts, notes))
        marks = ",".join("?" * len(PICTURE_REASONS))
        for stream, reason, count, first in db.execute(
                "SELECT stream_id, reason, COUNT(*), MIN(at) FROM results WHERE mode = 'deep' AND reason IN (%s) GROUP BY stream_id, reason" % marks,
                PICTURE_REASONS):
            print("  %s: %d × %s, first at %s" % (stream, count, reason, time.strftime("%H:%M:%S", time.gmtime(first))))
        for (message,) in db.execute("SELECT message FROM results WHERE mode = 'deep' AND reason IN (%s) LIMIT 3" % marks, PICTURE_REASONS):
            print("    " + message)
        if verdicts:
            # Keep the evidence: each verdict's change picture and the stored reference pictures, to look at.
            keep = tempfile.mkdtemp(prefix="streampulse-bench-pictures-evidence-")
            rows = db.execute("SELECT id, stream_id, reason, thumbnail FROM state_changes WHERE thumbnail IS NOT NULL AND reason IN (%s)" % marks,
                              PICTURE_REASONS).fetchall()
            rows += db.execute("SELECT 0, stream_id, 'reference', reference_jpeg FROM picture_baselines WHERE reference_jpeg IS NOT NULL").fetchall()
            for change, stream, reason, jpeg in rows:
                with open(os.path.join(keep, "%s-%s-%d.jpg" % (stream, reason, change)), "wb") as f:
                    f.write(jpeg)
            print("evidence pictures kept in %s" % keep)
        return 0 if verdicts == 0 else 1
    finally:
        if serve.poll() is None:
            serve.kill()
        server.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
