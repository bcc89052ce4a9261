"""PyTorch training loops of the toolkit's MNIST model: the baselines `kerasrnn bench --reference` compares with.

    python -m kerasrnn.torch.reference '{"epochs": 2}' result.json [plain|notebook]

Both train the same split, cell, units, layers, direction, batch size, epochs,
Adam learning rate and seed as `kerasrnn fit mnist`, written the way people
write them by hand (zero_grad / backward / step):

- `plain`: the fastest hand-written loop, over shuffled slices of tensors held in memory;
- `notebook`: the course notebook's loop as written: an MNIST data set whose
  `__getitem__` turns each image into a PIL image and then into a tensor
  (what torchvision's MNIST and ToTensor do, reproduced here because
  torchvision's CPU wheel is not always on the registry), a shuffled
  `DataLoader` of batch 64, and `loss.item()` after every batch.

Dropout, augmentation, clipping and learning-rate schedules are not reproduced:
compare with them off. The result has the keys of metrics.json that the bench table reads.
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


LOOPS = {"plain": "plain PyTorch loop", "notebook": "notebook PyTorch loop"}


def to_tensor(picture):
    """torchvision's ToTensor of an 8-bit grayscale PIL image: (1, height, width) float32 in [0, 1]."""
    import torch

    pixels = torch.from_numpy(np.array(picture, np.uint8, copy=True))
    pixels = pixels.view(picture.size[1], picture.size[0], 1).permute((2, 0, 1)).contiguous()
    return pixels.to(dtype=torch.get_default_dtype()).div(255)


def notebook_dataset(images: np.ndarray, labels: np.ndarray):
    """torchvision's MNIST data set with `transform=ToTensor()`: a PIL image per item, then a tensor."""
    import torch
    from PIL import Image

    class Mnist(torch.utils.data.Dataset):
        def __init__(self):
            self.data, self.targets = torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))

        def __len__(self):
            return len(self.data)

        def __getitem__(self, index):
            image, target = self.data[index], int(self.targets[index])
            return to_tensor(Image.fromarray(image.numpy(), mode="L")), target

    return Mnist()


def plain_epochs(x_train: np.ndarray, y_train: np.ndarray, batch: int, generator):
    """Each epoch's batches as slices of one shuffled order of tensors held in memory (full batches)."""
    import torch

    x, y = torch.from_numpy(x_train.astype(np.float32) / 255.0), torch.from_numpy(y_train.astype(np.int64))
    steps = len(x) // batch

    def epoch():
        order = torch.randperm(len(x), generator=generator)
        for step in range(steps):
            chosen = order[step * batch : (step + 1) * batch]
            yield x[chosen], y[chosen]

    return epoch


def notebook_epochs(x_train: np.ndarray, y_train: np.ndarray, batch: int, generator):
    """A shuffled DataLoader over the notebook's data set, reshaped to rows as the notebook does."""
    import torch

    loader = torch.utils.data.DataLoader(notebook_dataset(x_train, y_train), batch_size=batch, shuffle=True, generator=generator)

    def epoch():
        for images, labels in loader:
            yield images.reshape(-1, 28, 28), labels

    return epoch


def train_and_measure(config: dict, loop: str = "plain") -> dict:
    import torch

    from kerasrnn.digits.mnist_data import load_mnist
    from kerasrnn.tasks.mnist import stratified_split

    torch.manual_seed(config["seed"])
    x, y, x_test, y_test = load_mnist(config["data_path"], log=lambda message: print(message, file=sys.stderr))
    x_train, _, y_train, _ = stratified_split(x, y, config["seed"])
    if config["limit"]:
        x_train, y_train = x_train[: config["limit"]], y_train[: config["limit"]]
    model, batch = build(config), config["batch_size"]
    optimizer = torch.optim.Adam(model.parameters(), lr=config["lr"])
    loss_function = torch.nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(config["seed"])
    epochs = (plain_epochs if loop == "plain" else notebook_epochs)(x_train, y_train, batch, generator)
    epoch_seconds, samples = [], 0
    for _ in range(config["epochs"]):
        model.train()
        started, samples, running_loss = time.perf_counter(), 0, 0.0
        for images, labels in epochs():
            optimizer.zero_grad()
            loss = loss_function(model(images), labels)
            loss.backward()
            optimizer.step()
            samples += len(labels)
            if loop == "notebook":
                running_loss += loss.item()  # the notebook prints its running loss
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
        "backend": LOOPS[loop],
        "device": f"CPU ({os.cpu_count()} cores), torch {torch.__version__}, {torch.get_num_threads()} threads",
        "config": config,
        "precision": "float32",
        "epoch_seconds": [round(seconds, 3) for seconds in epoch_seconds],
        "train_samples_per_second": round(samples * len(steady) / sum(steady), 1),
        "predict_samples_per_second": round(len(pixels) / predict_seconds, 1),
        "test": {"loss": test_loss, "accuracy": float((logits.argmax(1).numpy() == y_test).mean()), "samples": len(y_test)},
    }


def main() -> None:
    options, result_file = json.loads(sys.argv[1]), sys.argv[2]
    loop = sys.argv[3] if len(sys.argv) > 3 else "plain"
    os.environ.setdefault("KERAS_BACKEND", "torch")  # the task module imports Keras; let it sit on torch
    from kerasrnn.backend import select_backend

    select_backend()
    from kerasrnn.tasks import get_task

    config = get_task("mnist").make_config(options)
    result = train_and_measure(config, loop)
    from kerasrnn.runs import write_json_atomic

    write_json_atomic(result_file, result)


if __name__ == "__main__":
    main()
