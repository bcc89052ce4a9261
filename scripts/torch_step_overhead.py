"""What Keras adds around PyTorch's fused kernel in one mnist training step, against a plain PyTorch loop.

    python scripts/torch_step_overhead.py [-o KEY=VALUE ...] [--steps 100] [--rounds 5]

One process, Keras on the torch backend, the same random batches for every variant; the variants
take turns for `--rounds` rounds (this VM's speed drifts, so only neighbours in time compare) and
the table gives each one's median ms a step and the plain loop's median divided by it:

- plain PyTorch loop: `torch.nn.LSTM`/`GRU` + `Linear`, CrossEntropyLoss, torch's Adam (the `--reference`).
- Keras train_step: the toolkit's model compiled exactly as `kerasrnn fit mnist` compiles it.
- the toolkit's step: what `kerasrnn fit mnist` runs on torch (kerasrnn.torch.step), same model and options.
- ... without clipping and decay: the same with `clipnorm=null lr_schedule=constant`.
- least Keras step: the Keras model's forward pass only; the loss, backward pass and torch's Adam on
  Keras' own variables are written by hand (what no Keras trainer can undercut).
- forward only (no gradients), Keras model and plain module: the cost of Keras' layer calls.
"""

from __future__ import annotations

import argparse
import statistics
import time


def step_timer(steps: int):
    def per_step_ms(step) -> float:
        step(0)  # warm-up (first calls allocate)
        started = time.perf_counter()
        for index in range(steps):
            step(index)
        return 1000 * (time.perf_counter() - started) / steps

    return per_step_ms


def variants(config: dict, steps: int) -> dict:
    """name -> a function running training step `index` on batch `index`."""
    import numpy as np
    import torch

    from kerasrnn.tasks import get_task
    from kerasrnn.torch.reference import build
    from kerasrnn.torch.step import TorchStep
    from kerasrnn.training.fitting import compile_model

    task, batch = get_task("mnist"), config["batch_size"]
    rng = np.random.default_rng(config["seed"])
    x = torch.from_numpy(rng.random((steps * batch, 28, 28), dtype=np.float32))
    y = torch.from_numpy(rng.integers(0, 10, steps * batch))

    def batch_at(index):
        chosen = slice(index * batch, (index + 1) * batch)
        return x[chosen], y[chosen]

    plain = build(config)
    plain_optimizer, cross_entropy = torch.optim.Adam(plain.parameters(), lr=config["lr"]), torch.nn.CrossEntropyLoss()

    def plain_step(index):
        inputs, labels = batch_at(index)
        plain_optimizer.zero_grad()
        cross_entropy(plain(inputs), labels).backward()
        plain_optimizer.step()

    as_fit = compile_model(task, config, steps_per_epoch=steps)
    toolkit_model = compile_model(task, config, steps_per_epoch=steps)
    toolkit_model._symbolic_build(data_batch=batch_at(0))
    toolkit_step = TorchStep(toolkit_model)
    bare = compile_model(task, {**config, "clipnorm": None, "lr_schedule": "constant"}, steps_per_epoch=steps)
    least = task.build_model(config)
    least_optimizer = torch.optim.Adam([variable.value for variable in least.trainable_weights], lr=config["lr"])

    def least_keras_step(index):
        inputs, labels = batch_at(index)
        least_optimizer.zero_grad()
        torch.nn.functional.nll_loss(torch.log(least(inputs, training=True)), labels).backward()
        least_optimizer.step()

    def no_grad(model):
        def forward(index):
            with torch.no_grad():
                model(batch_at(index)[0])

        return forward

    return {
        "plain PyTorch loop": plain_step,
        "Keras train_step": lambda index: as_fit.train_step(batch_at(index)),
        "... without clipping and decay": lambda index: bare.train_step(batch_at(index)),
        "least Keras step (Keras model, torch loss and Adam)": least_keras_step,
        "the toolkit's step (kerasrnn fit on torch)": lambda index: toolkit_step(*batch_at(index)),
        "forward only: Keras model": no_grad(least),
        "forward only: plain module": no_grad(plain),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--option", action="append", default=[], help="a fit option KEY=VALUE")
    parser.add_argument("--steps", type=int, default=100, help="steps a variant runs in one round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of all variants, one after the other")
    args = parser.parse_args()

    from kerasrnn.backend import select_backend

    select_backend("torch")
    import torch
    from kerasrnn_cli.main import parse_option_pairs

    from kerasrnn.errors import UserError
    from kerasrnn.studies.tables import markdown
    from kerasrnn.tasks import get_task

    try:
        config = get_task("mnist").make_config(parse_option_pairs(args.option))
    except UserError as error:
        raise SystemExit(f"error: {error}") from None
    torch.manual_seed(config["seed"])
    steps = variants(config, args.steps)
    timings = {name: [] for name in steps}
    per_step_ms = step_timer(args.steps)
    for _ in range(args.rounds):
        for name, step in steps.items():
            timings[name].append(per_step_ms(step))
    medians = {name: statistics.median(values) for name, values in timings.items()}
    plain = medians["plain PyTorch loop"]
    print(f"{config['cell']} {config['units']}, batch {config['batch_size']}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; median of {args.rounds} rounds of {args.steps} steps\n")  # fmt: skip
    rows = [
        {"variant": name, "ms a step": f"{ms:.1f}", "range": f"{min(timings[name]):.1f}-{max(timings[name]):.1f}",
         "plain loop's step / this": f"{plain / ms:.2f}x" if "forward" not in name else ""}
        for name, ms in medians.items()
    ]  # fmt: skip
    forward_ratio = medians["forward only: plain module"] / medians["forward only: Keras model"]
    rows[-1]["plain loop's step / this"] = rows[-2]["plain loop's step / this"] = f"forward {forward_ratio:.2f}x"
    print(markdown(rows, ["variant", "ms a step", "range", "plain loop's step / this"]))


if __name__ == "__main__":
    main()
