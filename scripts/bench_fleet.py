#!/usr/bin/env python3
"""Fleet-scale benchmark of `streampulse serve` (release build) against local cameras on 127.0.0.1.

A benchmark, not a test: it prints figures. Used by scripts/bench (fleet sizes) and
scripts/bench-dashboard (first paint in headless Chromium + status API p99 with 10,000 streams).

Cameras: GStreamer RTSP paths /cam0…/camN sharing one 480p H.264 encoder (one viewer kept attached, so
probes join mid-GOP as with real cameras) and the multi-client MJPEG server's /cam/N paths.
All traffic stays on 127.0.0.1. Every camera shares one host here, so the per-host session budget is
raised (real fleets spread over many hosts).
"""
import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAMERAS = os.path.join(ROOT, "scripts", "test-cameras")
TICKS = os.sysconf("SC_CLK_TCK")
ADMIN_PASSWORD = "bench-admin-password"


def launch(script, *args):
    proc = subprocess.Popen(["/usr/bin/python3", os.path.join(CAMERAS, script), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    if not line.startswith("READY"):
        raise SystemExit(f"{script} did not start: {line!r}")
    return proc, {k: int(v) for k, v in (p.split("=") for p in line.split()[1:])}


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cameras:
    def __init__(self, rtsp_paths):
        self.rtsp, rp = launch("rtsp_server.py", "--fleet", str(max(1, rtsp_paths)), "--paths", "normal")
        self.mjpeg, mp = launch("mjpeg_server.py")
        self.rtsp_port, self.mjpeg_port = rp["port"], mp["port"]
        # One viewer kept attached: the shared encoder runs continuously and probes join mid-GOP.
        self.viewer = subprocess.Popen(["ffmpeg", "-v", "quiet", "-rtsp_transport", "tcp", "-i", f"rtsp://127.0.0.1:{self.rtsp_port}/cam0",
                                        "-f", "null", "-"], stdin=subprocess.DEVNULL)
        time.sleep(1)

    def pids(self):
        return [self.rtsp.pid, self.mjpeg.pid, self.viewer.pid]

    def stop(self):
        for p in (self.viewer, self.rtsp, self.mjpeg):
            p.kill()
            p.wait()


class Monitor:
    """One `streampulse serve` with N streams, half RTSP and half MJPEG."""

    def __init__(self, binary, plugins, cameras, n, interval="60s", deep="5m", settings=()):
        self.dir = tempfile.mkdtemp(prefix=f"sp-bench-{n}-")
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.n = n
        self.cameras = cameras
        self.interval = interval
        self.deep = deep
        self.settings = list(settings)
        self.config = os.path.join(self.dir, "config.yaml")
        self.write_config()
        data = os.path.join(self.dir, "data")
        self.token = subprocess.check_output([binary, "token", "create", "--name", "bench", "--role", "admin", "--data-dir", data],
                                             text=True, stderr=subprocess.DEVNULL).strip()
        env = dict(os.environ, STREAMPULSE_ADMIN_PASSWORD=ADMIN_PASSWORD)
        self.log = open(os.path.join(self.dir, "serve.log"), "w")
        # STREAMPULSE_BENCH_WRAP="heaptrack -o /tmp/ht" runs the monitor under a profiler (figures then meaningless).
        wrap = os.environ.get("STREAMPULSE_BENCH_WRAP", "").split()
        self.proc = subprocess.Popen([*wrap, binary, "serve", "--config", self.config, "--data-dir", data, "--plugins-dir", plugins],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                urllib.request.urlopen(self.base + "/healthz", timeout=1)
                break
            except Exception:
                time.sleep(0.1)
        self.started = time.time()

    def stream_lines(self, renamed=None):
        lines = []
        for i in range(self.n):
            if i % 2 == 0:
                url = f"rtsp://127.0.0.1:{self.cameras.rtsp_port}/cam{i // 2}"
            else:
                url = f"http://127.0.0.1:{self.cameras.mjpeg_port}/cam/{i // 2}"
            name = f"Camera {i}" + (" (renamed)" if renamed == i else "")
            lines.append(f"  - {{ id: c{i}, name: \"{name}\", url: \"{url}\", group: \"site{i % 20}\" }}")
        return lines

    def write_config(self, renamed=None):
        text = "\n".join([
            "settings:", f"  interval: {self.interval}", f"  deep_interval: {self.deep}", "  timeout: 10s", "  retries: 2",
            f"  listen: 127.0.0.1:{self.port}", "  host_sessions: 100000",
            *(f"  {k}: {v}" for k, v in (kv.split("=", 1) for kv in self.settings)), "streams:", *self.stream_lines(renamed)]) + "\n"
        tmp = self.config + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, self.config)  # an editor's rename-save

    def get(self, path):
        request = urllib.request.Request(self.base + path, headers={"Authorization": "Bearer " + self.token})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def post(self, path):
        request = urllib.request.Request(self.base + path, method="POST", headers={"Authorization": "Bearer " + self.token})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def cpu_seconds(self, pid=None):
        with open(f"/proc/{pid or self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS

    def rss_mb(self, key="VmRSS"):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) / 1024
        return 0

    def memory_split(self):
        """The resident memory by kind, in MB: program and libraries (file-backed), the main heap, malloc's
        other arenas, thread stacks, and other anonymous mappings (allocations above the mmap threshold)."""
        split = {"files": 0.0, "heap": 0.0, "arenas": 0.0, "stacks": 0.0, "big blocks": 0.0}
        counts = {k: 0 for k in split}
        kind = None
        with open(f"/proc/{self.proc.pid}/smaps") as f:
            for line in f:
                head = line.split()
                if "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
                    lo, hi = (int(x, 16) for x in head[0].split("-"))
                    size, name = hi - lo, (head[5] if len(head) > 5 else "")
                    if name == "[heap]":
                        kind = "heap"
                    elif name.startswith("/"):
                        kind = "files"
                    elif name.startswith("["):
                        kind = "stacks"
                    elif lo % (64 << 20) == 0 or size in (64 << 20, 128 << 20):
                        kind = "arenas"  # glibc aligns each arena heap to its 64 MiB reservation
                    elif size in ((1 << 20) + 4096, (8 << 20) + 4096, 1 << 20, 8 << 20):
                        kind = "stacks"
                    else:
                        kind = "big blocks"
                    counts[kind] += 1
                elif head[0] == "Rss:":
                    split[kind] += int(head[1]) / 1024
        return ", ".join(f"{k} {v:.0f} MB ({counts[k]} maps)" for k, v in split.items())

    def threads(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            return next((int(line.split()[1]) for line in f if line.startswith("Threads:")), 0)

    def sqlite_written(self):
        return next((s["written"] for s in self.get("/api/sinks") if s["name"] == "sqlite"), 0)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def wrk_p99(url, token, seconds=10, connections=20):
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-H", f"Authorization: Bearer {token}", url],
                         capture_output=True, text=True).stdout
    def ms(label):
        m = re.search(rf"^\s*{label}\s+([0-9.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            return float("nan")
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v
    rps = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {"p50_ms": ms("50%"), "p99_ms": ms("99%"), "rps": float(rps.group(1)) if rps else 0.0,
            "non2xx": int(errors.group(1)) if errors else 0, "socket_errors": socket_errors.group(1) if socket_errors else "none"}


def measure_reload(mon):
    """Time from saving a config that renames one stream to the API showing the new name."""
    target = mon.n // 3
    before = mon.get("/api/config/status").get("last_reload")
    start = time.time()
    mon.write_config(renamed=target)
    deadline = start + 30
    while time.time() < deadline:
        status = mon.get("/api/config/status")
        if status.get("last_reload") != before:
            applied = time.time()
            # Visible means in the stream list (/api/streams), the fleet picture every dashboard reads.
            # Polled as a one-stream page cut from that same picture (the list in config order), so the time
            # is the monitor's, not this script's parsing of 4 MB of JSON; the full list is read once after.
            visible = None
            reads = []
            while time.time() < applied + 5 and visible is None:
                t_read = time.time()
                listed = mon.get(f"/api/streams?offset={target}&limit=1")
                reads.append((time.time() - t_read) * 1000)
                if listed and listed[0]["id"] == f"c{target}" and listed[0]["name"].endswith("(renamed)"):
                    visible = time.time()
                else:
                    time.sleep(0.005)
            t_full = time.time()
            full = [s for s in mon.get("/api/streams") if s["id"] == f"c{target}"]
            full_ms = (time.time() - t_full) * 1000
            if not (full and full[0]["name"].endswith("(renamed)")):
                visible = None
            change = status.get("last_change", "")
            if visible is not None:
                change += (f"; visible in /api/streams after {(visible - start) * 1000:.0f} ms "
                           f"({len(reads)} page reads of {', '.join(f'{r:.0f}' for r in reads)} ms; "
                           f"then the full list, renamed, in {full_ms:.0f} ms)")
            return (applied - start) * 1000, change, visible is not None
        time.sleep(0.005)
    return float("nan"), "timed out", False


def fleet(args, binary, plugins):
    rows = []
    for n in args.sizes:
        cameras = Cameras(n // 2 + 1)
        mon = Monitor(binary, plugins, cameras, n, interval=args.interval, deep=args.deep, settings=args.setting)
        # The first check of every stream is deep (a picture must be seen before a stream is called up), and
        # deep probes are limited to settings.max_deep_probes at once: the first round takes ~n/55 s here.
        warmup = max(args.warmup, n // 45)
        print(f"\n== {n} streams ({n // 2} RTSP + {n - n // 2} MJPEG), interval {args.interval}, deep every {args.deep}; "
              f"warm-up {warmup} s (the first round is all deep probes), then {args.measure} s measured", flush=True)
        startup_cpu0 = mon.cpu_seconds()
        # Sample the first round: where the RSS peak falls, and how many threads and probes it holds then.
        peak = {"rss": 0.0}
        t_start = time.time()
        while time.time() < t_start + warmup:
            time.sleep(5)
            rss = mon.rss_mb()
            if peak.get("round_done") is None and mon.get("/api/summary")["unknown"] == 0:
                peak["round_done"] = time.time() - t_start
            if rss > peak["rss"]:
                engine = mon.get("/api/engine")
                peak = {"round_done": peak.get("round_done"), "rss": rss, "at": time.time() - t_start, "threads": mon.threads(), "in_flight": engine["in_flight"],
                        "checks": engine["checks"], "queued": {s["name"]: s["queued"] for s in mon.get("/api/sinks") if s["queued"]},
                        "memory": mon.memory_split()}
        warm = mon.get("/api/engine")
        print(f"   warm-up: {warm['checks']} checks, lag p50 {warm['lag_p50_ms']:.1f} ms p99 {warm['lag_p99_ms']:.1f} ms, "
              f"CPU {100 * (mon.cpu_seconds() - startup_cpu0) / warmup:.0f}% of one core, in flight {warm['in_flight']}, "
              f"RSS {mon.rss_mb():.0f} MB (peak {mon.rss_mb('VmHWM'):.0f} MB)", flush=True)
        if "at" in peak:
            print(f"   first-round RSS peak sampled: {peak['rss']:.0f} MB at {peak['at']:.0f} s, {peak['threads']} threads, "
                  f"{peak['in_flight']} probes in flight, {peak['checks']} checks done; sink queues {peak['queued'] or 'empty'}; "
                  f"{peak['memory']}", flush=True)
        print(f"   first round (every stream checked once, deep): " + (f"done by {peak['round_done']:.0f} s" if peak.get("round_done") else "not done in the warm-up"), flush=True)
        mon.post("/api/settings/engine-stats/reset")
        cpu0, rows0, t0 = mon.cpu_seconds(), mon.sqlite_written(), time.time()
        cam_cpu0 = sum(mon.cpu_seconds(p) for p in cameras.pids())
        time.sleep(max(1, args.measure - 12))
        api = wrk_p99(mon.base + "/api/streams", mon.token, seconds=10)
        elapsed = time.time() - t0
        stats = mon.get("/api/engine")
        cpu = 100 * (mon.cpu_seconds() - cpu0) / elapsed
        cam_cpu = 100 * (sum(mon.cpu_seconds(p) for p in cameras.pids()) - cam_cpu0) / elapsed
        rows_per_s = (mon.sqlite_written() - rows0) / elapsed
        reload_ms, change, renamed = measure_reload(mon)
        streams = mon.get("/api/streams")
        counts = {}
        for s in streams:
            counts[s["status"]] = counts.get(s["status"], 0) + 1
        row = {
            "streams": n, "scheduled_per_s": n / seconds(args.interval), "checks_per_s": stats["checks"] / elapsed,
            "lag_p50_ms": stats["lag_p50_ms"], "lag_p99_ms": stats["lag_p99_ms"], "cpu_pct": cpu, "cameras_cpu_pct": cam_cpu,
            "rss_mb": mon.rss_mb(), "peak_rss_mb": mon.rss_mb("VmHWM"), "sqlite_rows_per_s": rows_per_s,
            "api_p50_ms": api["p50_ms"], "api_p99_ms": api["p99_ms"], "api_rps": api["rps"], "api_non2xx": api["non2xx"],
            "reload_ms": reload_ms, "reload_applied": renamed, "statuses": counts,
        }
        rows.append(row)
        print("   " + json.dumps(row), flush=True)
        print(f"   reload: {change}", flush=True)
        mon.stop()
        cameras.stop()
    print("\n" + "%-8s %9s %9s %9s %9s %7s %7s %9s %9s %9s %9s %9s" % (
        "streams", "sched/s", "checks/s", "lag p50", "lag p99", "CPU%", "cam%", "peakRSS", "rows/s", "API p99", "API rps", "reload"))
    for r in rows:
        print("%-8d %9.1f %9.1f %7.1fms %7.1fms %6.0f%% %6.0f%% %7.0fMB %9.1f %7.1fms %9.0f %7.0fms" % (
            r["streams"], r["scheduled_per_s"], r["checks_per_s"], r["lag_p50_ms"], r["lag_p99_ms"], r["cpu_pct"], r["cameras_cpu_pct"],
            r["peak_rss_mb"], r["sqlite_rows_per_s"], r["api_p99_ms"], r["api_rps"], r["reload_ms"]))
    print("CPU% = the monitor's CPU time / wall time (100% = one core); cam% = the local cameras' (GStreamer, MJPEG server, viewer).")
    print("API p99 = GET /api/streams (all streams, JSON) with wrk, 20 connections, 2 threads, 10 s, during probing.")
    if args.ffprobe:
        ffprobe_ratio(binary, plugins, args.ffprobe)


def ffprobe_ratio(binary, plugins, count):
    cameras = Cameras(4)
    url = f"rtsp://127.0.0.1:{cameras.rtsp_port}/cam1"
    out = subprocess.run([binary, "bench-probe", url, "--count", str(count), "--plugins-dir", plugins], capture_output=True, text=True).stdout
    plugin_cpu = float(re.search(r"cpu_ms_per_probe=([0-9.]+)", out).group(1))
    import resource
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for _ in range(count):
        subprocess.run(["ffprobe", "-v", "error", "-rtsp_transport", "tcp", "-show_streams", url], stdout=subprocess.DEVNULL, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    ff_cpu = ((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)) * 1000 / count
    cameras.stop()
    print(f"\n== one ffprobe process per check vs the plugin, {count} checks of the same fleet stream (mid-GOP join)")
    print(f"   plugin deep probe (decode + 1 s sample): {plugin_cpu:.1f} ms CPU per check")
    print(f"   ffprobe -show_streams (no decode check):  {ff_cpu:.1f} ms CPU per check")
    print(f"   ratio: ffprobe costs {ff_cpu / plugin_cpu:.1f}x the CPU of a deep probe")


def seconds(text):
    units = {"s": 1, "m": 60, "h": 3600}
    return float(text[:-1]) * units[text[-1]]


def dashboard(args, binary, plugins):
    """First paint of the dashboard in headless Chromium and status API p99 with N streams loaded."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    n = args.sizes[-1]
    cameras = Cameras(n // 2 + 1)
    mon = Monitor(binary, plugins, cameras, n, interval=args.interval, deep=args.deep, settings=args.setting)
    warmup = max(args.warmup, n // 45)
    print(f"== dashboard with {n} streams loaded (probing at interval {args.interval}); waiting {warmup} s for the first round", flush=True)
    time.sleep(warmup)
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(a)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.get(mon.base + "/")
        time.sleep(0.5)
        driver.find_element(By.ID, "login-password").send_keys(ADMIN_PASSWORD)
        driver.find_element(By.ID, "login-submit").click()
        deadline = time.time() + 30
        while time.time() < deadline and not driver.find_elements(By.CSS_SELECTOR, "#rows tr"):
            time.sleep(0.1)
        paints, tables = [], []
        for _ in range(args.repeats):
            driver.get(mon.base + "/")
            deadline = time.time() + 30
            table = None
            while time.time() < deadline and table is None:
                table = driver.execute_script("const m = performance.getEntriesByName('sp-table-rendered'); return m.length ? m[0].startTime : null")
                if table is None:
                    time.sleep(0.02)
            fcp = driver.execute_script("const p = performance.getEntriesByName('first-contentful-paint'); return p.length ? p[0].startTime : null")
            rows = len(driver.find_elements(By.CSS_SELECTOR, "#rows tr"))
            total = driver.execute_script("return document.getElementById('page-info').textContent")
            paints.append(fcp)
            tables.append(table)
        print(f"   rows on the first page: {rows} ({total})")
        print(f"   first contentful paint: median {statistics.median(paints):.0f} ms (runs: {', '.join('%.0f' % p for p in paints)})")
        print(f"   stream table painted with all {n} streams loaded: median {statistics.median(tables):.0f} ms after navigation "
              f"(runs: {', '.join('%.0f' % t for t in tables)})")
    finally:
        driver.quit()
    for path in ("/api/summary", "/api/streams?status=down&limit=100", "/api/streams?limit=100&offset=5000", "/api/streams/c1",
                 "/api/engine", "/api/streams"):
        api = wrk_p99(mon.base + path, mon.token, seconds=10)
        print(f"   GET {path:<36} 20 clients: p50 {api['p50_ms']:.2f} ms, p99 {api['p99_ms']:.2f} ms, {api['rps']:.0f} req/s, "
              f"non-2xx {api['non2xx']}, socket errors {api['socket_errors']}", flush=True)
    print(f"   monitor RSS {mon.rss_mb():.0f} MB (peak {mon.rss_mb('VmHWM'):.0f} MB)")
    print("Targets (issue #8): first paint < 1 s, status API p99 < 50 ms.")
    mon.stop()
    cameras.stop()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["fleet", "dashboard", "ffprobe"])
    parser.add_argument("--sizes", default="1000,5000,10000")
    parser.add_argument("--interval", default="60s")
    parser.add_argument("--setting", action="append", default=[], help="KEY=VALUE added to settings (repeatable)")
    parser.add_argument("--deep", default="5m")
    parser.add_argument("--warmup", type=int, default=75)
    parser.add_argument("--measure", type=int, default=75)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ffprobe", type=int, default=20, help="checks for the ffprobe comparison (0 to skip)")
    parser.add_argument("--bin", required=True)
    parser.add_argument("--plugins", required=True)
    args = parser.parse_args()
    args.sizes = [int(s) for s in args.sizes.split(",")]
    binary = os.path.join(args.bin, "streampulse")
    if args.mode == "fleet":
        fleet(args, binary, args.plugins)
    elif args.mode == "dashboard":
        dashboard(args, binary, args.plugins)
    else:
        ffprobe_ratio(binary, args.plugins, args.ffprobe)


if __name__ == "__main__":
    main()
