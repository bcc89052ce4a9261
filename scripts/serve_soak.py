"""Keep `kerasrnn serve` busy with mixed traffic from many clients, and check every answer.

    python scripts/serve_soak.py [RUN] [--seconds 300] [--clients 16] [--seed 0] [--json out.json]

Loopback only, bounded in time and clients. Each client loops: a think time (0.1-0.6 s, a person drawing), then
one request, drawn at random:
  drawn (35%)     a digit drawn with ballpoint or marker (kerasrnn.digits.handwriting), POST /predict
  photo (25%)     a photographed or scanned digit (pencil, shadow, chalk, 16x16 scan), POST /predict
  mixed (10%)     two good images and one garbage file in one request: 200, 2 answers, 1 error
  garbage (15%)   random bytes named .png: must be 4xx
  oversized (10%) a Content-Length over the limit, sent from a raw socket: must be 413, before the body is read
  stall (5%)      a client that stops sending mid-upload: must be 408 within the server's body timeout
A good answer is right when it equals what the same server answered for the same bytes before the soak
(its accuracy against the digits drawn is reported too). The server's resident memory is sampled every 2 s.
Prints a Markdown summary; the floors of the issue: no good request wrong or failed, every bad one 4xx, memory
growth under 100 MB, p99 latency of good requests under 500 ms.
"""

import argparse
import io
import json
import os
import random
import socket
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np

from kerasrnn.digits import handwriting
from kerasrnn.serving.routes import MAX_UPLOAD_BYTES
from kerasrnn.serving.server import start_server_process
from kerasrnn.studies.reports import machine_line

ROOT = Path(__file__).resolve().parents[1]
KINDS = {"drawn": 0.35, "photo": 0.25, "mixed": 0.10, "garbage": 0.15, "oversized": 0.10, "stall": 0.05}
DRAWN, PHOTO = ("ballpoint", "marker"), ("pencil", "shadow", "chalk", "scan-16")


def jpeg_bytes(image) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def multipart(files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="images"; filename="{name}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode()
        + content
        + b"\r\n"
        for name, content in files
    ]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def post(url: str, files: list[tuple[str, bytes]]) -> tuple[int, dict, float]:
    body, content_type = multipart(files)
    request = urllib.request.Request(f"{url}/predict", data=body, headers={"Content-Type": content_type})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, document = response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        status, document = error.code, json.loads(error.read() or b"{}")
    return status, document, time.perf_counter() - started


def raw_status(url: str, content_length: int, sent: bytes, wait: float) -> int:
    """POST /predict from a raw socket declaring `content_length` bytes but sending only `sent`; the status."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=wait) as connection:
        head = (f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; boundary=x\r\n"
                f"Content-Length: {content_length}\r\n\r\n")  # fmt: skip
        connection.sendall(head.encode() + sent)
        reply = connection.recv(64).decode(errors="replace")
    return int(reply.split(" ")[1]) if reply.startswith("HTTP/1.1 ") else 0


def image_pool(seed: int, per_condition: int) -> dict[str, list[tuple[str, bytes, int]]]:
    rng = np.random.default_rng(seed)
    pool = {"drawn": [], "photo": []}
    for kind, conditions in (("drawn", DRAWN), ("photo", PHOTO)):
        for condition in conditions:
            for index in range(per_condition):
                digit = index % 10
                pool[kind].append((f"{condition}-{index}.jpg", jpeg_bytes(handwriting.digit_image(digit, condition, rng)), digit))
    return pool


class Soak:
    def __init__(self, url: str, pool: dict, expected: dict, seconds: float, seed: int):
        self.url, self.pool, self.expected, self.deadline, self.seed = url, pool, expected, time.monotonic() + seconds, seed
        self.lock = threading.Lock()
        self.results: list[dict] = []

    def record(self, **result) -> None:
        with self.lock:
            self.results.append(result)

    def client(self, number: int) -> None:
        rng = random.Random(self.seed * 1000 + number)
        while time.monotonic() < self.deadline:
            time.sleep(rng.uniform(0.1, 0.6))
            kind = rng.choices(list(KINDS), weights=list(KINDS.values()))[0]
            try:
                getattr(self, kind)(rng)
            except Exception as error:  # a failed request is a result, not a crash of the soak
                self.record(kind=kind, ok=False, why=f"{type(error).__name__}: {error}")

    def good(self, kind: str, rng) -> None:
        name, content, digit = rng.choice(self.pool[kind])
        status, document, seconds = post(self.url, [(name, content)])
        answer = document.get("predictions", [{}])[0].get("label") if status == 200 else None
        self.record(kind=kind, ok=status == 200 and answer == self.expected[name], seconds=seconds, true=answer == digit,
                    why=f"status {status}, label {answer}")  # fmt: skip

    def drawn(self, rng) -> None:
        self.good("drawn", rng)

    def photo(self, rng) -> None:
        self.good("photo", rng)

    def mixed(self, rng) -> None:
        (a, content_a, _), (b, content_b, _) = rng.choice(self.pool["drawn"]), rng.choice(self.pool["photo"])
        status, document, seconds = post(self.url, [(a, content_a), ("junk.png", os.urandom(800)), (b, content_b)])
        labels = [entry["label"] for entry in document.get("predictions", [])]
        ok = status == 200 and labels == [self.expected[a], self.expected[b]] and len(document.get("errors", [])) == 1
        self.record(kind="mixed", ok=ok, seconds=seconds, why=f"status {status}, labels {labels}")

    def garbage(self, rng) -> None:
        status, _, _ = post(self.url, [(f"noise-{rng.randrange(1000)}.png", os.urandom(rng.randrange(1, 20000)))])
        self.record(kind="garbage", ok=400 <= status < 500, why=f"status {status}")

    def oversized(self, rng) -> None:
        status = raw_status(self.url, MAX_UPLOAD_BYTES + 1 + rng.randrange(10**6), b"--x\r\n", wait=30)
        self.record(kind="oversized", ok=status == 413, why=f"status {status}")

    def stall(self, rng) -> None:
        started = time.perf_counter()
        status = raw_status(self.url, 50_000, b"--x\r\nContent-Disposition: form-data", wait=60)
        self.record(kind="stall", ok=status == 408, seconds=time.perf_counter() - started, why=f"status {status}")


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def summary(soak: Soak, memory: list[tuple[float, float]], seconds: float, clients: int) -> dict:
    by_kind = {}
    for kind in KINDS:
        results = [result for result in soak.results if result["kind"] == kind]
        failures = [result["why"] for result in results if not result["ok"]]
        by_kind[kind] = {"requests": len(results), "failed": len(failures), "examples": failures[:3]}
    latencies = sorted(r["seconds"] for r in soak.results if r["kind"] in ("drawn", "photo") and r["ok"])
    truths = [r["true"] for r in soak.results if r["kind"] in ("drawn", "photo") and r["ok"]]
    rss = [value for _, value in memory]
    return {
        "seconds": seconds, "clients": clients, "by_kind": by_kind,
        "good_latency_ms": {"p50": round(1000 * float(np.percentile(latencies, 50)), 1),
                            "p99": round(1000 * float(np.percentile(latencies, 99)), 1)} if latencies else None,
        "good_accuracy_against_drawn_digit": round(float(np.mean(truths)), 4) if truths else None,
        "memory_mb": {"start": round(rss[0], 1), "max": round(max(rss), 1), "end": round(rss[-1], 1),
                      "growth": round(rss[-1] - rss[0], 1)},
        "memory_over_time": [(round(t, 1), round(value, 1)) for t, value in memory],
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", type=Path, default=ROOT / "saved_models" / "mnist-pretrained")
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-condition", type=int, default=20, help="pool images per drawing condition")
    parser.add_argument("--json", type=Path, help="also write the whole summary here")
    args = parser.parse_args()
    pool = image_pool(args.seed, args.per_condition)
    server, url = start_server_process(args.run)
    try:
        expected = {}
        for name, content, _ in pool["drawn"] + pool["photo"]:  # what this server answers unloaded
            status, document, _ = post(url, [(name, content)])
            expected[name] = document["predictions"][0]["label"] if status == 200 else None
        soak = Soak(url, pool, expected, args.seconds, args.seed)
        threads = [threading.Thread(target=soak.client, args=(number,), daemon=True) for number in range(args.clients)]
        started, memory = time.monotonic(), []
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            memory.append((time.monotonic() - started, resident_mb(server.pid)))
            time.sleep(2)
        memory.append((time.monotonic() - started, resident_mb(server.pid)))
        alive = server.poll() is None
    finally:
        server.terminate()
        server.wait(timeout=60)
    result = {**summary(soak, memory, args.seconds, args.clients), "server_alive_at_end": alive}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    print(machine_line(), file=sys.stderr)
    print(f"{args.clients} clients for {args.seconds:.0f} s; server alive at the end: {alive}\n")
    print("| requests | count | failed |\n| --- | --- | --- |")
    for kind, counts in result["by_kind"].items():
        print(f"| {kind} | {counts['requests']} | {counts['failed']} |")
    latency, memory_mb = result["good_latency_ms"], result["memory_mb"]
    print(f"\ngood requests: p50 {latency['p50']} ms, p99 {latency['p99']} ms; read as the digit drawn: "
          f"{result['good_accuracy_against_drawn_digit']:.1%}")  # fmt: skip
    print(f"server memory: {memory_mb['start']} MB at the start, {memory_mb['max']} MB at most, {memory_mb['end']} MB "
          f"at the end (growth {memory_mb['growth']} MB)")  # fmt: skip
    for kind, counts in result["by_kind"].items():
        for example in counts["examples"]:
            print(f"failed {kind}: {example}")


if __name__ == "__main__":
    main()
