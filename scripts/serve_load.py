"""Latency and concurrency of `kerasrnn serve` on one drawn digit per request (Markdown).

    python scripts/serve_load.py [RUN] [--requests 100] [--concurrent 200]

Starts `kerasrnn serve RUN` on a free port, posts digits drawn by
kerasrnn.digits.handwriting (ballpoint and marker on paper, 80-320 px PNGs) one at a
time for the latency, then `--concurrent` requests at once, and checks that
every concurrent answer is 200 and the same label the server gave that image
alone. Needs the serve and dev extras (httpx).
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from kerasrnn.digits import handwriting
from kerasrnn.serving.server import start_server_process
from kerasrnn.studies.reports import machine_line


def drawn_digits(count: int, seed: int = 7) -> list[tuple[int, bytes]]:
    rng = np.random.default_rng(seed)
    digits = []
    for index in range(count):
        image = handwriting.digit_image(index % 10, ("ballpoint", "marker")[index % 2], rng)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        digits.append((index % 10, buffer.getvalue()))
    return digits


def post(client: httpx.Client, url: str, content: bytes) -> tuple[float, int, int | None]:
    started = time.perf_counter()
    answer = client.post(f"{url}/predict", files=[("images", ("digit.png", content, "image/png"))], timeout=120)
    label = answer.json()["predictions"][0]["label"] if answer.status_code == 200 else None
    return time.perf_counter() - started, answer.status_code, label


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", type=Path, default=Path("saved_models/mnist-pretrained"))
    parser.add_argument("--requests", type=int, default=100, help="sequential requests for the latency")
    parser.add_argument("--concurrent", type=int, default=200, help="requests sent at once")
    args = parser.parse_args()
    server, url = start_server_process(args.run)
    try:
        digits = drawn_digits(max(args.requests, args.concurrent))
        with httpx.Client() as client:
            for _, content in digits[:5]:  # warm-up: the first calls trace the model
                post(client, url, content)
            alone = [post(client, url, content) for _, content in digits[: args.requests]]
        latencies = sorted(seconds * 1000 for seconds, _, _ in alone)
        labels_alone = {index: label for index, (_, _, label) in enumerate(alone)}
        started = time.perf_counter()
        with httpx.Client(limits=httpx.Limits(max_connections=args.concurrent)) as client:
            with ThreadPoolExecutor(max_workers=args.concurrent) as pool:
                together = list(pool.map(lambda item: post(client, url, item[1]), digits[: args.concurrent]))
        wall = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(timeout=30)
    ok = sum(status == 200 for _, status, _ in together)
    same = sum(label == labels_alone.get(index, label) for index, (_, _, label) in enumerate(together))
    right = sum(label == digit for (digit, _), (_, _, label) in zip(digits, together))
    print(f"{machine_line()}; run {args.run}\n")
    print("| measure | value |\n| --- | --- |")
    print(f"| /predict latency, one digit, median of {len(latencies)} | {statistics.median(latencies):.1f} ms |")
    print(f"| /predict latency, 90th percentile | {latencies[int(0.9 * len(latencies))]:.1f} ms |")
    print(f"| {args.concurrent} concurrent requests: answered 200 | {ok} / {len(together)} |")
    print(f"| ... same label as the digit alone | {same} / {len(together)} |")
    print(f"| ... label = the digit drawn | {right} / {len(together)} |")
    print(f"| ... wall time for all | {wall:.1f} s |")
    if ok != len(together) or same != len(together):
        raise SystemExit("some concurrent requests failed or answered differently")


if __name__ == "__main__":
    main()
