"""The default adder through ONNX, outside the toolkit: exact sums at 64 and 300 bits, and any length in one call.

    python scripts/onnx_report.py [--run RUN_DIR] [--sums 20]

Without --run it fits the README's main job (`kerasrnn fit adder --loss mse`, the defaults) into a temporary
folder. It exports the run with `kerasrnn export RUN --format onnx`, then runs docs/export.md's onnxruntime
client, in a process where kerasrnn cannot be imported, on random 64-bit and 300-bit sums and on the carry
chains 2^n - 1 + 1; and times one onnxruntime call at 1,000 to 100,000 steps (peak memory of that process).
"""

import argparse
import random
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kerasrnn.backend import cli_command  # noqa: E402
from kerasrnn.studies.reports import machine_line  # noqa: E402

TIMING = """
import resource, sys, time
import numpy as np, onnxruntime
session = onnxruntime.InferenceSession(sys.argv[1])
name = session.get_inputs()[0].name
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for steps in (1000, 10000, 100000):
    x = np.random.default_rng(steps).integers(0, 2, (1, steps, 2)).astype(np.float32)
    started = time.perf_counter()
    session.run(None, {name: x})
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    print(f"| {steps:,} | {time.perf_counter() - started:.4f} | {grown:.0f} |")
"""


def client_code() -> str:
    page = (ROOT / "docs" / "export.md").read_text()
    return page.split("<!-- onnx client -->", 1)[1].split("```python", 1)[1].split("```", 1)[0]


def client_sum(client: Path, artifact: Path, a: int, b: int) -> int:
    """The model's sum, from the docs' client run with kerasrnn unimportable."""
    blocked = f"import sys; sys.modules['kerasrnn'] = None; sys.argv = ['client', {str(artifact)!r}, '{a}', '{b}']; exec(open({str(client)!r}).read())"
    done = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True, check=True)
    return int(done.stdout.split()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="an adder run (default: fit the defaults now)")
    parser.add_argument("--sums", type=int, default=20, help="random sums at each bit length")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        run_dir = args.run or folder / "adder"
        if args.run is None:
            subprocess.run(cli_command("fit", "adder", "--loss", "mse", "--out", str(run_dir), "-q"), check=True)
        artifact = folder / "adder.onnx"
        subprocess.run(cli_command("export", str(run_dir), "--format", "onnx", "--out", str(artifact)), check=True)
        client = folder / "client.py"
        client.write_text(client_code())
        rng = random.Random(0)
        print(machine_line())
        print("\n| bits | sums | exact |\n| --- | --- | --- |")
        for bits in (64, 300):
            pairs = [(rng.getrandbits(bits), rng.getrandbits(bits)) for _ in range(args.sums)] + [(2**bits - 1, 1)]
            exact = sum(client_sum(client, artifact, a, b) == a + b for a, b in pairs)
            print(f"| {bits} | {len(pairs)} (with the carry chain 2^{bits} - 1 + 1) | {exact} |")
        print("\n| steps in one call | seconds | process grew, MB |\n| --- | --- | --- |")
        subprocess.run([sys.executable, "-c", TIMING, str(artifact)], check=True)


if __name__ == "__main__":
    main()
