#!/usr/bin/env python3
"""What infra/local/demo.sh shows: read-only views of the running demo.

  demo-status.py show                  replicas (state document) with replay lag, and
                                       every HAProxy node's view of the read backend
  demo-status.py count PHASE [ROLE]    how many replicas are in PHASE (any = all phases)
  demo-status.py timings PORT...       per-phase durations from the functions' /metrics
  demo-status.py reads LOG...          pgbench totals over its output files
  demo-status.py alarm up|down ID      an Alertmanager v4 webhook body (firing) on stdout

Environment: DEMO_STATE (state.json), DEMO_PRIMARY_PORT, DEMO_NODES ("name=socket,..."),
DEMO_BACKEND, DEMO_CLUSTER. Nothing here changes anything: the demo's point is that the
functions do the work; this only looks (psql, HAProxy's admin socket, HTTP GET).
"""
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request


def psql_start(port, sql):
    return subprocess.Popen(
        ["psql", "-X", "-A", "-t", "-q",
         "-d", f"host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=2",
         "-c", sql],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def psql_result(proc):
    """The value a psql_start() query printed, or None when the server did not answer."""
    try:
        out, _ = proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return None
    return out.strip() if proc.returncode == 0 else None


def psql(port, sql):
    return psql_result(psql_start(port, sql))


def haproxy(sock, cmd):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(3)
    try:
        s.connect(sock)
        s.sendall((cmd + "\n").encode())
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
        return b"".join(chunks).decode()
    except OSError as e:
        return f"# error {e}"
    finally:
        s.close()


def state():
    try:
        with open(os.environ["DEMO_STATE"]) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {"replicas": []}


def human_bytes(n):
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def short(name):
    """pgsurge-<cluster>-<replica> → <replica> (the table stays narrow)."""
    prefix = f"pgsurge-{os.environ.get('DEMO_CLUSTER', '')}-"
    return name[len(prefix):] if name.startswith(prefix) else name


def show():
    primary_lsn = psql(os.environ["DEMO_PRIMARY_PORT"], "select pg_current_wal_lsn()")
    parts = []
    replicas = state().get("replicas", [])
    # Every replica at once: the line must come every second or two.
    queries = {}
    for r in replicas:
        port = (r.get("address") or "").rpartition(":")[2]
        if port and primary_lsn:
            queries[r["id"]] = psql_start(
                port, f"select pg_wal_lsn_diff('{primary_lsn}', pg_last_wal_replay_lsn())")
    for r in replicas:
        lag = "-"
        if r["id"] in queries:
            v = psql_result(queries[r["id"]])
            if v not in (None, ""):
                lag = human_bytes(max(0.0, float(v)))
            elif v is None and r.get("phase") not in ("creating",):
                lag = "down"
        parts.append(f"{r['id']}({r['role']}) {r['phase']} lag {lag}")
    print("  replicas: " + (" | ".join(parts) if parts else "(none)"))
    backend = os.environ.get("DEMO_BACKEND", "pg_read")
    for node in filter(None, os.environ.get("DEMO_NODES", "").split(",")):
        name, _, sock = node.partition("=")
        text = haproxy(sock, f"show stat {backend} 4 -1")
        lines = [l for l in text.splitlines() if l.strip()]
        if not lines or not lines[0].startswith("# pxname"):
            print(f"  {name}: {text.strip()[:120]}")
            continue
        head = lines[0][2:].split(",")
        col = {c: i for i, c in enumerate(head)}
        servers = []
        for l in lines[1:]:
            f = l.split(",")
            servers.append(f"{short(f[col['svname']])} {f[col['status']]} "
                           f"cur {f[col['scur']]} total {f[col['stot']]}")
        print(f"  {name} {backend}: " + " | ".join(servers))


def count(phase, role=None):
    n = sum(1 for r in state().get("replicas", [])
            if (phase == "any" or r.get("phase") == phase) and (role is None or r.get("role") == role))
    print(n)


METRIC = re.compile(r'^pgsurge_phase_duration_seconds_(sum|count)\{phase="([^"]+)"\} ([0-9.e+-]+)$')
# Why a phase may have no observation.
NOT_SEEN = {
    "boot": "(no replica was seen booting)",
}
# How to read a phase's figure.
FOOTNOTES = {
    "boot": "server request -> PostgreSQL accepting connections as a standby (the local "
            "provider runs the image's bootstrap script)",
    "catch-up": "PostgreSQL up -> replay lag within bounds (0 when caught up at the first look)",
}
PHASES = ["snapshot", "clone", "boot", "catch-up", "register", "drain", "delete"]


def timings(ports):
    got = {}
    for port in ports:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError as e:
            print(f"  (metrics of port {port} unavailable: {e})")
            continue
        for line in text.splitlines():
            m = METRIC.match(line)
            if m:
                kind, phase, value = m.groups()
                got.setdefault(phase, {"sum": 0.0, "count": 0.0})[kind] += float(value)
    print(f"  {'phase':<10} {'count':>5} {'total s':>9} {'mean s':>8}")
    for phase in PHASES + sorted(set(got) - set(PHASES)):
        g = got.get(phase)
        if not g or not g["count"]:
            why = NOT_SEEN.get(phase, "")
            print(f"  {phase:<10} {0:>5} {'-':>9} {'-':>8}  {why}")
            continue
        print(f"  {phase:<10} {int(g['count']):>5} {g['sum']:>9.2f} {g['sum'] / g['count']:>8.2f}")
    for phase, note in FOOTNOTES.items():
        if got.get(phase, {}).get("count"):
            print(f"  {phase}: {note}")


def reads(logs):
    tx = failed = 0
    aborted = []
    for path in logs:
        try:
            text = open(path).read()
        except OSError:
            continue
        # One summary per pgbench run (the demo runs it in 5-second pieces).
        tx += sum(map(int, re.findall(r"number of transactions actually processed: (\d+)", text)))
        failed += sum(map(int, re.findall(r"number of failed transactions: (\d+)", text)))
        aborted += re.findall(r"^.*(?:aborted|error|fatal).*$", text, re.I | re.M)
    note = f"; {len(aborted)} client errors, first: {aborted[0].strip()}" if aborted else ""
    print(f"{tx} transactions, {failed} failed{note}")


def alarm(direction, ident):
    name = "PgReadLoadHigh" if direction == "up" else "PgReadLoadLow"
    summary = ("Read replicas above 75% CPU" if direction == "up"
               else "Read replicas below 20% CPU")
    # The cluster is named by `pgsurge_cluster`: an alert that names another cluster, or
    # none (cluster.require_label = true), is ignored by the functions.
    labels = {"alertname": name, "pgsurge_cluster": os.environ.get("DEMO_CLUSTER", "demo"),
              "severity": "page", "pgsurge_replicas": os.environ.get("DEMO_REPLICAS", "2")}
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    print(json.dumps({
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{name}"}}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": f"pgsurge-scale-{direction}",
        "groupLabels": {"alertname": name},
        "commonLabels": labels,
        "commonAnnotations": {"summary": summary},
        "externalURL": "http://alertmanager.demo:9093",
        "alerts": [{
            "status": "firing",
            "labels": labels,
            "annotations": {"summary": summary},
            "startsAt": now,
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://vmalert.demo:8880/vmalert/alert",
            "fingerprint": ident,
        }],
    }))


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "show":
        show()
    elif cmd == "count":
        count(args[0], args[1] if len(args) > 1 else None)
    elif cmd == "timings":
        timings(args)
    elif cmd == "reads":
        reads(args)
    elif cmd == "alarm":
        alarm(args[0], args[1])
    else:
        sys.exit(f"demo-status.py: unknown command {cmd}")


if __name__ == "__main__":
    main()
