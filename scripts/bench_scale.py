#!/usr/bin/env python3
"""Scale-out benchmark (issue #17): several `streampulse serve` agents (release build) sharing one site through
leases in one PostgreSQL 15, against the local fleet cameras (bench_fleet's RTSP + MJPEG paths on 127.0.0.1).

A benchmark, not a test: it prints figures — checks/s against scheduled, each agent's schedule lag p50/p99 and
CPU, PostgreSQL rows/s (inserted + updated, from pg_stat_database), and the takeover time after killing one
agent (from the kill to the first result of the last of its streams written by another, on PostgreSQL's clock).
PostgreSQL runs from a temporary folder on a loopback port, as the `postgres` user when run as root.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_fleet import ADMIN_PASSWORD, Cameras, Monitor, free_port  # noqa: E402


class Postgres:
    def __init__(self):
        versions = sorted(int(v) for v in os.listdir("/usr/lib/postgresql") if v.isdigit())
        self.bin = f"/usr/lib/postgresql/{versions[-1]}/bin"
        self.dir = tempfile.mkdtemp(prefix="sp-bench-pg-")
        self.port = free_port()
        self.as_user = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            self.as_user = ["/usr/bin/setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]
        self.run("initdb", "-D", self.dir + "/data", "-U", "streampulse", "--auth=trust", "-E", "UTF8", "--no-sync")
        self.run("pg_ctl", "-D", self.dir + "/data", "-l", self.dir + "/log", "-w", "start", "-o",
                 f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=200")
        self.url = f"postgres://streampulse@127.0.0.1:{self.port}/postgres"

    def run(self, program, *args):
        subprocess.run([*self.as_user, f"{self.bin}/{program}", *args], check=True, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True)

    def query(self, sql):
        out = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "streampulse", "-d", "postgres", "-tAc", sql],
                             check=True, capture_output=True, text=True).stdout.strip()
        return out

    def stop(self):
        try:
            self.run("pg_ctl", "-D", self.dir + "/data", "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


class Agent(Monitor):
    """One agent; `get`, `post`, `cpu_seconds` and `rss_mb` are the fleet bench's."""

    def __init__(self, binary, plugins, config, name, postgres, lease, workdir, token):
        self.name = name
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        data = os.path.join(workdir, "data-" + name)
        self.token = token  # accounts are in PostgreSQL, shared by the agents
        self.log = open(os.path.join(workdir, name + ".log"), "w")
        env = dict(os.environ, STREAMPULSE_ADMIN_PASSWORD=ADMIN_PASSWORD)
        self.proc = subprocess.Popen([binary, "serve", "--config", config, "--data-dir", data, "--plugins-dir", plugins,
                                      "--listen", f"127.0.0.1:{self.port}", "--site", "depot", "--postgres", postgres,
                                      "--agent", name, "--lease-seconds", str(lease)], stdout=self.log, stderr=subprocess.STDOUT, env=env)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True)
    parser.add_argument("--plugins", required=True)
    parser.add_argument("--agents", type=int, default=3)
    parser.add_argument("--per-agent", type=int, default=3000)
    parser.add_argument("--interval", default="60s")
    parser.add_argument("--deep", default="5m")
    parser.add_argument("--lease", type=float, default=15)
    parser.add_argument("--warmup", type=int, default=0, help="seconds before measuring (default: until every stream has a result)")
    parser.add_argument("--measure", type=int, default=60)
    # The cameras are one GStreamer process and one MJPEG process on this machine: the agents together get the
    # decode slots one monitor has in scripts/bench (64), so the cameras carry the same load as there (three
    # agents with 64 each overloaded the RTSP server: handshake timeouts on every RTSP stream).
    parser.add_argument("--deep-slots", type=int, default=0, help="max_deep_probes per agent (default: 64 / agents)")
    args = parser.parse_args()
    n = args.agents * args.per_agent
    interval = float(args.interval.rstrip("s"))
    workdir = tempfile.mkdtemp(prefix="sp-bench-scale-")
    cameras = Cameras(n // 2 + 1)
    pg = Postgres()
    agents = []
    try:
        config = os.path.join(workdir, "config.yaml")
        lines = ["settings:", f"  interval: {args.interval}", f"  deep_interval: {args.deep}", "  timeout: 10s", "  retries: 2",
                 "  host_sessions: 100000", f"  max_deep_probes: {args.deep_slots or max(1, 64 // args.agents)}", "streams:"]
        for i in range(n):
            url = (f"rtsp://127.0.0.1:{cameras.rtsp_port}/cam{i // 2}" if i % 2 == 0 else f"http://127.0.0.1:{cameras.mjpeg_port}/cam/{i // 2}")
            lines.append(f"  - {{ id: c{i:05d}, url: \"{url}\", site: depot }}")
        with open(config, "w") as f:
            f.write("\n".join(lines) + "\n")
        print(f"== {args.agents} agents sharing one site of {n} streams ({n // 2} RTSP + {n - n // 2} MJPEG) through one PostgreSQL "
              f"{pg.query('SHOW server_version')}; interval {args.interval}, deep every {args.deep}, lease {args.lease:g} s, "
              f"{args.deep_slots or max(1, 64 // args.agents)} decode slots per agent", flush=True)
        token = subprocess.check_output([args.bin, "token", "create", "--name", "bench", "--role", "admin", "--postgres", pg.url],
                                        text=True, stderr=subprocess.DEVNULL).strip()
        for k in range(args.agents):
            agents.append(Agent(args.bin, args.plugins, config, f"agent{k + 1}", pg.url, args.lease, workdir, token))
        t0 = time.time()
        deadline = t0 + max(args.warmup, 600)
        while time.time() < deadline:
            time.sleep(5)
            try:
                probed = int(pg.query("SELECT count(DISTINCT stream_id) FROM stream_status"))
            except subprocess.CalledProcessError:
                probed = 0
            if probed >= n and time.time() - t0 >= args.warmup:
                break
        owners = pg.query("SELECT string_agg(owner || ' ' || c, ', ') FROM (SELECT owner, count(*) c FROM stream_leases GROUP BY 1 ORDER BY 1) t")
        print(f"   every stream has a result after {time.time() - t0:.0f} s; leases: {owners}", flush=True)
        for agent in agents:
            agent.post("/api/settings/engine-stats/reset")
        cpu0 = [a.cpu_seconds() for a in agents]
        rows0 = pg.query("SELECT tup_inserted + tup_updated FROM pg_stat_database WHERE datname = 'postgres'")
        results0 = int(pg.query("SELECT count(*) FROM results"))
        m0 = time.time()
        time.sleep(args.measure)
        elapsed = time.time() - m0
        rows1 = pg.query("SELECT tup_inserted + tup_updated FROM pg_stat_database WHERE datname = 'postgres'")
        results1 = int(pg.query("SELECT count(*) FROM results"))
        per_agent = []
        checks = 0
        for agent, c0 in zip(agents, cpu0):
            stats = agent.get("/api/engine")
            checks += stats["checks"]
            per_agent.append({"agent": agent.name, "streams": stats["streams"], "checks_per_s": round(stats["checks"] / elapsed, 1),
                              "lag_p50_ms": round(stats["lag_p50_ms"], 1), "lag_p99_ms": round(stats["lag_p99_ms"], 1),
                              "cpu_pct": round(100 * (agent.cpu_seconds() - c0) / elapsed), "peak_rss_mb": round(agent.rss_mb("VmHWM"))})
        row = {"streams": n, "agents": args.agents, "scheduled_per_s": round(n / interval, 1), "checks_per_s": round(checks / elapsed, 1),
               "results_written_per_s": round((results1 - results0) / elapsed, 1),
               "postgres_rows_per_s": round((int(rows1) - int(rows0)) / elapsed, 1),
               "lag_p99_ms_worst": max(a["lag_p99_ms"] for a in per_agent),
               "statuses": dict(line.split("|") for line in pg.query("SELECT status || CASE WHEN pending THEN '(pending)' ELSE '' END, count(*) "
                                                                      "FROM stream_status GROUP BY 1").splitlines())}
        print("   " + json.dumps(row), flush=True)
        failing = pg.query("SELECT s.reason, coalesce(s.phase, '-'), split_part(st.url, ':', 1), count(*) FROM stream_status s "
                           "JOIN streams st ON st.id = s.stream_id WHERE s.status <> 'ok' GROUP BY 1, 2, 3 ORDER BY 4 DESC LIMIT 6")
        if failing:
            print("   not ok: " + "; ".join(failing.splitlines()), flush=True)
        for a in per_agent:
            print("   " + json.dumps(a), flush=True)
        # Takeover: kill one agent, time until every stream it held has a result written by another.
        victim = agents[0]
        held = pg.query(f"SELECT count(*) FROM stream_leases WHERE owner = '{victim.name}'")
        killed = float(pg.query("SELECT extract(epoch FROM now())"))
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait()
        taken = (f"SELECT stream_id, min(at - coalesce(total_ms, 0) / 1000) AS first FROM results WHERE agent <> '{victim.name}' "
                 f"AND at > {killed} AND stream_id IN (SELECT stream_id FROM results WHERE agent = '{victim.name}' AND at > {killed} - 2 * {interval}) GROUP BY 1")
        victim_streams = int(pg.query(f"SELECT count(DISTINCT stream_id) FROM results WHERE agent = '{victim.name}' AND at > {killed} - 2 * {interval}"))
        end = time.time() + 4 * args.lease + 2 * interval + 60
        while time.time() < end:
            time.sleep(2)
            if int(pg.query(f"SELECT count(*) FROM ({taken}) t")) >= victim_streams:
                break
        done = pg.query(f"SELECT round((max(first) - {killed})::numeric, 1), count(*) FROM ({taken}) t").split("|")
        leased = pg.query(f"SELECT count(*) FROM stream_leases WHERE owner <> '{victim.name}' AND owner IS NOT NULL")
        print(f"   takeover: killed {victim.name} holding {held} leases; its {victim_streams} recently probed streams were all probed by "
              f"another agent {done[0]} s after the kill ({done[1]} taken; lease {args.lease:g} s, interval {args.interval}); "
              f"{leased} of {n} leases held by the survivors", flush=True)
    finally:
        for agent in agents:
            if agent.proc.poll() is None:
                agent.proc.send_signal(signal.SIGTERM)
        for agent in agents:
            try:
                agent.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                agent.proc.kill()
        cameras.stop()
        pg.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
