"""A plain PyTorch training loop of the toolkit's MNIST model: the baseline `kerasrnn bench --reference` compares with.

    python -m kerasrnn.torch_reference '{"epochs": 2}' result.json

It is what a course notebook runs: the same split, cell, units, layers,
direction, batch size, epochs, Adam learning rate and seed as `kerasrnn fit
mnist`, written the way people write it by hand (a loop over shuffled
batches, zero_grad / backward / step). Dropout, augmentation and learning-rate
schedules are not reproduced: compare it with their defaults (off).
The result has the keys of metrics.json that the bench table reads.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np


def build(config: dict):
    import torch

    class RowReader(torch.nn.Module):
        def __init__(self):
            super().__init__()
            recurrent = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[config["cell"]]
            self.recurrent = recurrent(28, config["units"], num_layers=config["layers"], batch_first=True,
                                       bidirectional=config["bidirectional"])  # fmt: skip
            self.head = torch.nn.Linear(config["units"] * (2 if config["bidirectional"] else 1), 10)

        def forward(self, x):
            outputs, _ = self.recurrent(x)
            return self.head(outputs[:, -1])  # logits; CrossEntropyLoss applies the softmax

    return RowReader()


def train_and_measure(config: dict) -> dict:
    import torch

    from kerasrnn.datasets import load_mnist
    from kerasrnn.tasks.mnist import stratified_split

    torch.manual_seed(config["seed"])
    x, y, x_test, y_test = load_mnist(config["data_path"], log=lambda message: print(message, file=sys.stderr))
    x_train, _, y_train, _ = stratified_split(x, y, config["seed"])
    if config["limit"]:
        x_train, y_train = x_train[: config["limit"]], y_train[: config["limit"]]
    x_train = torch.from_numpy(x_train.astype(np.float32) / 255.0)
    y_train = torch.from_numpy(y_train.astype(np.int64))
    model, batch = build(config), config["batch_size"]
    optimizer = torch.optim.Adam(model.parameters(), lr=config["lr"])
    loss_function = torch.nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(config["seed"])
    steps = len(x_train) // batch
    epoch_seconds = []
    for _ in range(config["epochs"]):
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        started = time.perf_counter()
        for step in range(steps):
            chosen = order[step * batch : (step + 1) * batch]
            optimizer.zero_grad()
            loss = loss_function(model(x_train[chosen]), y_train[chosen])
            loss.backward()
            optimizer.step()
        epoch_seconds.append(time.perf_counter() - started)

    model.eval()
    pixels = torch.from_numpy(x_test.astype(np.float32) / 255.0)
    with torch.no_grad():
        started = time.perf_counter()
        logits = torch.cat([model(pixels[i : i + 512]) for i in range(0, len(pixels), 512)])
        predict_seconds = time.perf_counter() - started
        test_loss = float(loss_function(logits, torch.from_numpy(y_test.astype(np.int64))))
    steady = epoch_seconds[1:] or epoch_seconds
    return {
        "task": "mnist",
        "backend": "plain PyTorch loop",
        "device": f"CPU ({os.cpu_count()} cores), torch {torch.__version__}, {torch.get_num_threads()} threads",
        "config": config,
        "epoch_seconds": [round(seconds, 3) for seconds in epoch_seconds],
        "train_samples_per_second": round(steps * batch * len(steady) / sum(steady), 1),
        "predict_samples_per_second": round(len(pixels) / predict_seconds, 1),
        "test": {"loss": test_loss, "accuracy": float((logits.argmax(1).numpy() == y_test).mean()), "samples": len(y_test)},
    }


def main() -> None:
    options, result_file = json.loads(sys.argv[1]), sys.argv[2]
    os.environ.setdefault("KERAS_BACKEND", "torch")  # the task module imports Keras; let it sit on torch
    from kerasrnn.backend import select_backend

    select_backend()
    from kerasrnn.tasks import get_task

    config = get_task("mnist").make_config(options)
    result = train_and_measure(config)
    from kerasrnn.runs import write_json_atomic

    write_json_atomic(result_file, result)


if __name__ == "__main__":
    main()
