"""Latency of `textseq serve` under concurrent clients on loopback.

    python benchmarks/serve_load.py runs/multi30k-en-lm                      # /api/predict
    python benchmarks/serve_load.py runs/multi30k-de-en --clients 4          # /api/translate

Starts `textseq serve RUN --port 0`, sends each text once (their times are reported apart: the
server's first requests trace and compile), then --requests requests from --clients threads (each
with its own connection per request, as browsers' fetches are), and reports the p50/p99 latency,
the throughput and the error count. Prints a table, and as its last line one JSON object.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_model  # noqa: E402

TEXTS = {
    "predict": ["a man in a blue shirt is standing on a ladder cleaning a", "two dogs", "a woman is", "",
                "children are playing in the"],
    "translate": ["ein mann in einem blauen hemd steht auf einer leiter vor einem haus", "zwei hunde spielen im schnee .",
                  "eine frau liest ein buch ."],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()

    server = subprocess.Popen([sys.executable, "-m", "textseq", "serve", str(args.run), "--port", "0"],
                              stderr=subprocess.PIPE, text=True)
    url = next(line.split(" at ")[1].split()[0] for line in server.stderr if " at http://" in line)
    with urllib.request.urlopen(url + "api/info") as response:
        task = json.loads(response.read())["task"]
    endpoint = "predict" if task == "language_model" else "translate"
    texts = TEXTS[endpoint]
    latencies, errors, lock = [], [], threading.Lock()

    def send(text: str) -> tuple[float, str | None]:
        """One request: its seconds, and the error if it failed."""
        request = urllib.request.Request(url + "api/" + endpoint, data=json.dumps({"text": text}).encode(),
                                         headers={"Content-Type": "application/json"})
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                response.read()
                error = None if response.status == 200 else f"status {response.status}"
        except urllib.error.URLError as failure:
            error = str(failure)
        return time.perf_counter() - started, error

    def client(index: int, count: int) -> None:
        for i in range(count):
            seconds, error = send(texts[(index + i) % len(texts)])
            with lock:
                latencies.append(seconds)
                if error:
                    errors.append(error)

    # Each text once, alone, before the clients: the server's first requests trace (and, for a
    # translation, compile) its searches, which a server does once, not per request.
    first_seconds = [send(text)[0] for text in texts]

    counts = [args.requests // args.clients + (i < args.requests % args.clients) for i in range(args.clients)]
    threads = [threading.Thread(target=client, args=(i, n)) for i, n in enumerate(counts)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    server.send_signal(signal.SIGINT)
    server.wait(timeout=30)

    p50, p99 = (float(x) for x in np.percentile(latencies, [50, 99]) * 1000)
    result = {"endpoint": f"/api/{endpoint}", "run": args.run.name, "clients": args.clients,
              "requests": len(latencies), "errors": len(errors), "p50_ms": round(p50, 1), "p99_ms": round(p99, 1),
              "requests_per_s": round(len(latencies) / wall, 1), "first_requests_ms": [round(x * 1000) for x in first_seconds],
              "cpu": cpu_model()}
    print("| endpoint | run | clients | requests | errors | p50 | p99 | requests/s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    print(f"| {result['endpoint']} | {result['run']} | {args.clients} | {result['requests']} | {result['errors']} | "
          f"{p50:.1f} ms | {p99:.1f} ms | {result['requests_per_s']} |")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
