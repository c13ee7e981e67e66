#!/usr/bin/env python3
"""Slowloris and file-descriptor starvation against `streampulse serve` (a benchmark that prints figures).

`serve` runs with an open-files limit of 1024 (soft and hard, as a unit without LimitNOFILE would give it)
and probes 40 healthy MJPEG cameras of the local multi-client server every 2 s. Then N slow clients connect
to its web port, each sending a request header one byte every few seconds, and keep reconnecting when cut
off. Meanwhile /healthz is timed once a second, and every check result is read back from the API: a camera
check that is not `ok` during the attack is a false camera fault (target 0). The slow clients come from
127.0.0.1 and /healthz is asked from 127.0.0.2 (another client). All traffic is on the loopback.
"""
import argparse
import http.client
import calendar
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import json

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_fleet import launch, free_port  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True)
    parser.add_argument("--plugins", required=True)
    parser.add_argument("--connections", type=int, default=1500)
    parser.add_argument("--seconds", type=int, default=40)
    parser.add_argument("--nofile", type=int, default=1024)
    args = parser.parse_args()

    mjpeg, ports = launch("mjpeg_server.py")
    work = tempfile.mkdtemp(prefix="sp-slowloris-")
    port = free_port()
    streams = 40
    config = os.path.join(work, "config.yaml")
    with open(config, "w") as f:
        f.write("\n".join([
            "settings:", "  interval: 2s", "  deep_interval: 10s", "  timeout: 5s", "  retries: 0",
            f"  listen: 127.0.0.1:{port}", "  host_sessions: 1000", "streams:",
            *[f"  - {{ id: cam{i}, url: \"http://127.0.0.1:{ports['port']}/cam/{i}\" }}" for i in range(streams)]]) + "\n")
    data = os.path.join(work, "data")
    token = subprocess.check_output([args.bin, "token", "create", "--name", "b", "--role", "admin", "--data-dir", data],
                                    text=True, stderr=subprocess.DEVNULL).strip()
    log = open(os.path.join(work, "serve.log"), "w")

    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (args.nofile, args.nofile))

    env = dict(os.environ, STREAMPULSE_ADMIN_PASSWORD="slowloris-admin-pw")
    serve = subprocess.Popen([args.bin, "serve", "--config", config, "--data-dir", data, "--plugins-dir", args.plugins],
                             stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=limit)
    base = f"http://127.0.0.1:{port}"
    try:
        faults = attack(args, serve, port, token, streams)
    finally:
        serve.terminate()
        try:
            serve.wait(20)
        except subprocess.TimeoutExpired:
            serve.kill()
        mjpeg.kill()
        log.close()
    print(open(os.path.join(work, "serve.log")).read().count("Too many open files"), "'Too many open files' lines in the serve log")
    sys.exit(0 if faults == 0 else 1)


def attack(args, serve, port, token, streams):
    base = f"http://127.0.0.1:{port}"

    def get(path, timeout=30):
        # The operator's own reads come from 127.0.0.3, not from the attacker's 127.0.0.1.
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout, source_address=("127.0.0.3", 0))
        conn.request("GET", path, headers={"Authorization": "Bearer " + token})
        body = conn.getresponse().read()
        conn.close()
        return json.loads(body)

    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(base + "/healthz", timeout=1)
            break
        except Exception:
            time.sleep(0.2)
    # Every camera green before the attack.
    while time.time() < deadline and not all(s["status"] == "ok" for s in get("/api/streams")):
        time.sleep(0.5)
    print(f"serve: open-files limit {args.nofile}, {streams} MJPEG cameras every 2 s, all ok before the attack")

    stop = threading.Event()
    opened = [0]
    held = [0]

    def slow_client():
        while not stop.is_set():
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
            except OSError:
                time.sleep(0.5)
                continue
            opened[0] += 1
            held[0] += 1
            try:
                s.sendall(b"GET /api/streams HTTP/1.1\r\nHost: x\r\n")
                while not stop.is_set():
                    s.sendall(b"X")  # one header byte every 3 s: never a complete request
                    stop.wait(3)
            except OSError:
                pass
            finally:
                held[0] -= 1
                s.close()

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    attack_start = time.time()
    threads = [threading.Thread(target=slow_client, daemon=True) for _ in range(args.connections)]
    for t in threads:
        t.start()
    health = []
    failed_health = 0
    while time.time() - attack_start < args.seconds:
        started = time.time()
        try:
            # Another client (127.0.0.2): the attacker's connections all come from 127.0.0.1.
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=("127.0.0.2", 0))
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            conn.close()
            health.append((time.time() - started) * 1000)
        except Exception:
            failed_health += 1
        time.sleep(max(0, 1 - (time.time() - started)))
    stop.set()
    attack_end = time.time()
    for t in threads:
        t.join(10)

    # Every check stored during the attack window, per camera.
    faults, overloaded, checks = 0, 0, 0
    for i in range(streams):
        for c in get(f"/api/streams/cam{i}/checks?limit=1000"):
            at = c.get("at")
            t = calendar.timegm(time.strptime(at[:19], "%Y-%m-%dT%H:%M:%S")) if at else 0
            if not (attack_start <= t <= attack_end):
                continue
            checks += 1
            if c["reason"] == "monitor_overloaded":
                overloaded += 1
            elif c["status"] != "ok":
                faults += 1
    health.sort()
    pct = (lambda q: health[min(len(health) - 1, int((len(health) - 1) * q))] if health else float("nan"))
    print(f"slow clients: {args.connections} (connections opened over the run: {opened[0]})")
    print(f"/healthz: {len(health)} answered, {failed_health} failed or >10 s; p50 {pct(0.5):.1f} ms, p99 {pct(0.99):.1f} ms, max {max(health) if health else float('nan'):.1f} ms")
    print(f"camera checks during the attack: {checks}; false camera faults: {faults}; monitor_overloaded: {overloaded}")
    print(f"serve still running: {serve.poll() is None}")
    return faults


if __name__ == "__main__":
    main()
