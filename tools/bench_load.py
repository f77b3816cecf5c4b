#!/usr/bin/env python3
"""The mixed-load benchmark of `cosmicai serve` (loopback only, bounded in time):
a figure to report, not a test.

All at once, for DURATION seconds (default 30):
  - 200 keep-alive connections listing objects,
  - 50 connections fetching /api/cutouts with 256 ids each, cropped to 32x32 (5.2 MB;
    a reply is at most 8 MiB, and 16 are sent at once: the rest get 429),
  - 500 Server-Sent Event streams opened on a running run (past --max-streams,
    256 by default, the server answers 429),
  - run creation at the admission cap (one POST /api/runs every 0.5 s),
  - a probe timing GET /api/health every 20 ms (in a process of its own).
Prints the health latency percentiles, the responses by status, and the
server's peak RSS, then PASS or FAIL against the targets (health p99 <= 100 ms,
no 5xx). One asyncio thread drives every connection, so the client takes as
little CPU from the server as it can; both share this machine. Each connection
comes from a loopback address of its own (127.0.x.y: Linux routes all of
127/8 to lo), so the load is many clients, as in a class, and the server's
per-client shares (a quarter of its connections and streams, 4 replies) do not
stand in for its overall limits.

  tools/bench_load.py [--bin target/release/cosmicai] [--data data/bench-serve] [--duration 30]
"""
import argparse
import asyncio
import collections
import json
import multiprocessing
import os
import subprocess
import sys
import time

HEALTH_P99_TARGET_MS = 100.0


async def request(reader, writer, host, method, path, body=b""):
    """One HTTP/1.1 request on a keep-alive connection: (status, body)."""
    head = (f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n"
            "Content-Type: application/json\r\n\r\n")
    writer.write(head.encode() + body)
    await writer.drain()
    status_line = await reader.readline()
    status = int(status_line.split()[1])
    headers = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        data = b""
        while True:
            size = int((await reader.readline()).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            data += chunk[:-2]
        return status, data
    return status, await reader.readexactly(int(headers.get("content-length", "0")))


class Load:
    def __init__(self, host, port, deadline):
        self.host, self.port, self.deadline = host, port, deadline
        self.statuses = collections.Counter()
        self.health_ms = []
        self.streams_open = 0
        self.streams_refused = 0
        self.clients = 0

    async def connect(self):
        # A client of its own: the next loopback address from 127.0.0.3 on.
        self.clients += 1
        n = self.clients + 1
        source = f"127.0.{n // 250}.{n % 250 + 1}"
        return await asyncio.open_connection(self.host, self.port, local_addr=(source, 0))

    async def loop(self, method, path, body=b"", pause=0.0):
        reader, writer = await self.connect()
        while time.monotonic() < self.deadline:
            try:
                status, _ = await request(reader, writer, f"{self.host}:{self.port}", method, path, body)
            except (ConnectionError, asyncio.IncompleteReadError):
                self.statuses["connection error"] += 1
                reader, writer = await self.connect()
                continue
            self.statuses[f"{status} {method} {path.split('?')[0]}"] += 1
            if pause:
                await asyncio.sleep(pause)
        writer.close()


    async def stream(self, run_id):
        reader, writer = await self.connect()
        writer.write(f"GET /api/runs/{run_id}/events HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n\r\n".encode())
        await writer.drain()
        status = int((await reader.readline()).split()[1])
        self.statuses[f"{status} GET /api/runs/{{id}}/events"] += 1
        if status == 200:
            self.streams_open += 1
            while time.monotonic() < self.deadline:
                try:
                    if not await asyncio.wait_for(reader.readline(), 1.0):
                        break
                except asyncio.TimeoutError:
                    continue
        else:
            self.streams_refused += 1
        writer.close()


def probe_health(host, port, duration, out):
    """In its own process, so the load's event loop does not delay the timing:
    GET /api/health every 20 ms on one keep-alive connection."""
    import http.client
    conn = http.client.HTTPConnection(host, port, timeout=30)
    latencies, statuses = [], collections.Counter()
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        started = time.perf_counter()
        conn.request("GET", "/api/health")
        response = conn.getresponse()
        response.read()
        latencies.append((time.perf_counter() - started) * 1000)
        statuses[response.status] += 1
        time.sleep(0.02)
    out.send((latencies, dict(statuses)))


def peak_rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def main(args):
    server = subprocess.Popen(
        [args.bin, "serve", "--addr", "127.0.0.1:0", "--data-dir", args.data],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        for line in server.stdout:
            if line.startswith("listening on "):
                break
        host, port = line.strip().rsplit("/", 1)[1].split(":")
        port = int(port)
        setup = Load(host, port, 0)
        reader, writer = await setup.connect()
        hostport = f"{host}:{port}"
        _, body = await request(reader, writer, hostport, "GET", "/api/objects?has_image=true&limit=256")
        ids = ",".join(str(o["id"]) for o in json.loads(body)["objects"])
        # A long run to stream: tiny batches over the whole catalog.
        _, body = await request(reader, writer, hostport, "POST", "/api/runs",
                                b'{"world_size":4,"batch_size":4}')
        run_id = json.loads(body)["id"]
        writer.close()

        load = Load(host, port, time.monotonic() + args.duration)
        tasks = [load.loop("GET", "/api/objects?class=GALAXY&z_max=0.3&limit=60") for _ in range(200)]
        tasks += [load.loop("GET", f"/api/cutouts?ids={ids}&crop=32") for _ in range(50)]
        tasks += [load.stream(run_id) for _ in range(500)]
        tasks += [load.loop("POST", "/api/runs", b'{"world_size":1,"batch_size":64}', pause=0.5)]
        receive, send = multiprocessing.Pipe(duplex=False)
        probe = multiprocessing.Process(target=probe_health, args=(host, port, args.duration, send))
        probe.start()
        print(f"load: {args.duration} s, 200 listing + 50 cutout (256 ids) connections, 500 event "
              f"streams, run creation every 0.5 s, health every 20 ms ({os.cpu_count()} cores shared)")
        await asyncio.gather(*tasks)
        load.health_ms, health_statuses = receive.recv()
        probe.join()
        for status, n in health_statuses.items():
            load.statuses[f"{status} GET /api/health"] += n
        rss = peak_rss_mb(server.pid)
    finally:
        server.kill()
        server.wait()

    lat = sorted(load.health_ms)
    pct = lambda p: lat[min(len(lat) - 1, int(p / 100 * len(lat)))]
    print(f"health: {len(lat)} probes, p50 {pct(50):.1f} ms, p99 {pct(99):.1f} ms, max {lat[-1]:.1f} ms")
    print(f"event streams: {load.streams_open} open, {load.streams_refused} refused (429)")
    for key, n in sorted(load.statuses.items()):
        print(f"  {n:>8}  {key}")
    errors = sum(n for k, n in load.statuses.items() if k[0] == "5" or k == "connection error")
    print(f"server peak RSS {rss:.0f} MB; 5xx or connection errors: {errors}")
    ok = pct(99) <= HEALTH_P99_TARGET_MS and errors == 0
    print("PASS" if ok else f"FAIL (targets: health p99 <= {HEALTH_P99_TARGET_MS:.0f} ms, no 5xx)")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", default=os.environ.get("COSMICAI_BIN", "target/release/cosmicai"))
    parser.add_argument("--data", default="data/bench-serve")
    parser.add_argument("--duration", type=float, default=30.0)
    sys.exit(asyncio.run(main(parser.parse_args())))
