"""Where a training step of `kerasrnn fit mnist` spends its time: op time by op type.

    python scripts/profile_mnist_step.py [-o KEY=VALUE ...] [--steps 40] [--backend torch] [--reference]

Builds and compiles the mnist model exactly as `kerasrnn fit mnist` does (defaults: LSTM 128,
batch 64; `-o` changes any option), trains one warm-up epoch of `--steps` batches, then traces
another with TensorFlow's profiler and sums the time of every op by type across TensorFlow's
compute threads. Prints the step time (the trace costs some; compare shares, not totals) and a
Markdown table: op type, share of all op time, ms and calls per step. The batches are random
pixels: the time of a step does not depend on what the pixels show.

`--backend torch` profiles `kerasrnn fit mnist` on Keras' PyTorch backend with PyTorch's profiler
(self time of each aten op): it shows whether the fused recurrent kernels run (one
`aten::mkldnn_rnn_layer` forward and one `aten::mkldnn_rnn_layer_backward` per LSTM layer a step on
CPUs). `--reference` profiles the plain PyTorch loop of `kerasrnn bench --reference` instead (same
model, batch and optimizer), the same way.
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import time
from pathlib import Path

from kerasrnn.studies.tables import markdown


def op_time_by_type(trace_dir: Path) -> tuple[collections.Counter, collections.Counter]:
    """Total duration (ms) and count of each op type on TensorFlow's compute threads in one trace."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    space.ParseFromString(next(trace_dir.rglob("*.xplane.pb")).read_bytes())
    milliseconds, calls = collections.Counter(), collections.Counter()
    for plane in space.planes:
        names = {key: meta.name for key, meta in plane.event_metadata.items()}
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = names.get(event.metadata_id, "?")
                kind = name.rsplit(":", 1)[-1]
                if kind == "Process":  # the executor's envelope around the ops: not an op
                    continue
                milliseconds[kind] += event.duration_ps / 1e9
                calls[kind] += 1
    return milliseconds, calls


def random_batches(steps: int, batch: int):
    import numpy as np

    rng = np.random.default_rng(0)
    return rng.random((steps * batch, 28, 28), dtype=np.float32), rng.integers(0, 10, steps * batch)


def print_table(title: str, milliseconds: collections.Counter, calls: collections.Counter, steps: int, top: int) -> None:
    total = sum(milliseconds.values())
    print(f"{title}; {total / steps:.1f} ms of op time a step over {sum(calls.values()) / steps:.0f} op calls\n")
    rows = [
        {"op type": kind, "share of op time": f"{100 * ms / total:.1f}%", "ms a step": f"{ms / steps:.2f}", "calls a step": f"{calls[kind] / steps:.0f}"}
        for kind, ms in milliseconds.most_common(top)
    ]  # fmt: skip
    print(markdown(rows, ["op type", "share of op time", "ms a step", "calls a step"]))


def profile_torch_reference(config: dict, steps: int, top: int) -> None:
    """The plain PyTorch loop's step, by op type (self time of each aten op, so nothing counts twice)."""
    import torch

    from kerasrnn.torch.reference import build

    torch.manual_seed(config["seed"])
    batch = config["batch_size"]
    x, y = (torch.from_numpy(array) for array in random_batches(steps, batch))
    model = build(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=config["lr"])
    loss_function = torch.nn.CrossEntropyLoss()

    def epoch():
        for step in range(steps):
            chosen = slice(step * batch, (step + 1) * batch)
            optimizer.zero_grad()
            loss_function(model(x[chosen]), y[chosen]).backward()
            optimizer.step()

    epoch()  # warm-up
    seconds, milliseconds, calls = profile_with_torch(epoch)
    title = f"plain PyTorch loop, {config['cell']} {config['units']}, batch {batch}: {1000 * seconds / steps:.1f} ms a step under the profiler"
    print_table(title, milliseconds, calls, steps, top)


def profile_with_torch(epoch) -> tuple[float, collections.Counter, collections.Counter]:
    """(seconds, ms and calls of each aten op by self time, so nothing counts twice) of one call of `epoch`."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        started = time.perf_counter()
        epoch()
        seconds = time.perf_counter() - started
    milliseconds, calls = collections.Counter(), collections.Counter()
    for event in profiler.key_averages():
        if event.key.startswith("aten::") and event.self_cpu_time_total > 0:
            milliseconds[event.key] += event.self_cpu_time_total / 1000
            calls[event.key] += event.count
    return seconds, milliseconds, calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--option", action="append", default=[], help="a fit option KEY=VALUE")
    parser.add_argument("--steps", type=int, default=40, help="batches per traced epoch")
    parser.add_argument("--top", type=int, default=12, help="op types to list")
    parser.add_argument("--backend", choices=["tensorflow", "torch"], default="tensorflow", help="the Keras backend to profile")
    parser.add_argument("--reference", action="store_true", help="profile the plain PyTorch loop instead")
    args = parser.parse_args()

    from kerasrnn_cli.main import parse_option_pairs  # `-o KEY=VALUE` read exactly as `kerasrnn fit` reads it

    from kerasrnn.backend import select_backend
    from kerasrnn.errors import UserError

    select_backend("torch" if args.backend == "torch" and not args.reference else "tensorflow")
    import tensorflow as tf

    from kerasrnn.tasks import get_task
    from kerasrnn.training.fitting import compile_model, make_deterministic

    task = get_task("mnist")
    try:
        config = task.make_config(parse_option_pairs(args.option))
    except UserError as error:
        raise SystemExit(f"error: {error}") from None
    if args.reference:
        profile_torch_reference(config, args.steps, args.top)
        return
    make_deterministic(config["seed"], kernels=config["deterministic"])
    batch = config["batch_size"]
    x, y = random_batches(args.steps, batch)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).cache().repeat().prefetch(4)
    model = compile_model(task, config, steps_per_epoch=args.steps)
    model.fit(data, epochs=1, steps_per_epoch=args.steps, verbose=0)  # tracing and compiling happen here
    if args.backend == "torch":
        seconds, milliseconds, calls = profile_with_torch(
            lambda: model.fit(data, epochs=1, steps_per_epoch=args.steps, verbose=0)
        )
        title = f"Keras on PyTorch, {config['cell']} {config['units']}, batch {batch}: {1000 * seconds / args.steps:.1f} ms a step under the profiler"
        print_table(title, milliseconds, calls, args.steps, args.top)
        return

    with tempfile.TemporaryDirectory() as trace_dir:
        tf.profiler.experimental.start(trace_dir)
        started = time.perf_counter()
        model.fit(data, epochs=1, steps_per_epoch=args.steps, verbose=0)
        seconds = time.perf_counter() - started
        tf.profiler.experimental.stop()
        milliseconds, calls = op_time_by_type(Path(trace_dir))

    title = f"TensorFlow, {config['cell']} {config['units']}, batch {batch}: {1000 * seconds / args.steps:.1f} ms a step under the profiler"
    print_table(title, milliseconds, calls, args.steps, args.top)


if __name__ == "__main__":
    main()
