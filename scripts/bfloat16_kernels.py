"""The toolkit's training step on torch with its fused kernels in float32 and in bfloat16, by cell and size.

    python scripts/bfloat16_kernels.py [--rounds 3] [--steps 40] [--sizes lstm:32,lstm:64,...]

One process, Keras on the torch backend, mnist's model (28 rows of 28 pixels, batch 64) on random
batches; for each cell and size the two precisions take turns for `--rounds` rounds (this VM's speed
drifts: only neighbours in time compare) and the table gives the median ms a step of each and the ratio.
`precision=auto` (kerasrnn.training.precision) takes bfloat16 from the sizes where it was faster here.
"""

from __future__ import annotations

import argparse
import statistics
import time

SIZES = "lstm:32,lstm:64,lstm:128,lstm:256,gru:64,gru:128,gru:256"


def step_function(cell: str, units: int, steps: int):
    """(model, a function running step `index`): the toolkit's step on mnist's model."""
    import numpy as np
    import torch

    from kerasrnn.tasks import get_task
    from kerasrnn.torch.step import TorchStep
    from kerasrnn.training.fitting import compile_model

    task = get_task("mnist")
    config = task.make_config({"cell": cell, "units": units})
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((steps * 64, 28, 28), dtype=np.float32))
    y = torch.from_numpy(rng.integers(0, 10, steps * 64))
    model = compile_model(task, config, steps_per_epoch=steps)
    model._symbolic_build(data_batch=(x[:64], y[:64]))
    step = TorchStep(model)
    return model, lambda index: step(x[index * 64 : (index + 1) * 64], y[index * 64 : (index + 1) * 64])


def ms_a_step(step, steps: int) -> float:
    step(0)  # warm-up: the first call allocates
    started = time.perf_counter()
    for index in range(steps):
        step(index)
    return 1000 * (time.perf_counter() - started) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--sizes", default=SIZES, help="cell:units pairs, comma-separated")
    args = parser.parse_args()

    from kerasrnn.backend import select_backend

    select_backend("torch")
    import torch

    from kerasrnn.studies.tables import markdown
    from kerasrnn.training import precision

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, bfloat16 units: {precision.bfloat16_units()}; "
          f"median of {args.rounds} rounds of {args.steps} steps\n")  # fmt: skip
    rows = []
    for pair in args.sizes.split(","):
        cell, units = pair.split(":")
        model, step = step_function(cell, int(units), args.steps)
        timings = {"float32": [], "bfloat16": []}
        for _ in range(args.rounds):
            for kind in timings:
                with precision.kernels_in(model, kind):
                    timings[kind].append(ms_a_step(step, args.steps))
        single, half = (statistics.median(timings[kind]) for kind in ("float32", "bfloat16"))
        rows.append({"cell": cell, "units": units, "float32 ms a step": f"{single:.2f}", "bfloat16 ms a step": f"{half:.2f}",
                     "bfloat16 speed-up": f"{single / half:.2f}x"})  # fmt: skip
    print(markdown(rows, ["cell", "units", "float32 ms a step", "bfloat16 ms a step", "bfloat16 speed-up"]))


if __name__ == "__main__":
    main()
