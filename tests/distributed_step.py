"""One training step on 1 device and on 2 (logical) devices, from the same weights and global batch.

Run by tests/test_distributed.py in a process of its own (device counts are fixed when a backend starts):
`python tests/distributed_step.py BACKEND` prints one JSON document: for each model, the largest absolute
difference over every weight after the step, and how far the step moved the weights at all.
"""

import json
import sys

from kerasrnn.backend import select_backend

BACKEND = select_backend(sys.argv[1])

from kerasrnn.training import distribution  # noqa: E402

distribution.start_devices(BACKEND, 2)

import numpy as np  # noqa: E402

from kerasrnn.tasks import get_task  # noqa: E402
from kerasrnn.training import fitting  # noqa: E402

MODELS = {
    "adder-lstm": ("adder", {"units": 10}),
    "recall-bidirectional-stacked-gru": ("recall", {"cell": "gru", "units": 8, "layers": 2, "bidirectional": True}),
}


def weights_after_one_step(task_name: str, options: dict, devices: int) -> tuple[list, list]:
    """(weights before, weights after) one step of the toolkit's own fit set-up on `devices` devices."""
    task = get_task(task_name)
    config = task.make_config(options)
    placement = distribution.place(devices)
    assert placement.distributed == (devices > 1)
    fitting.make_deterministic(config["seed"])
    with placement.scope():
        model = fitting.training_model(task, config, steps_per_epoch=1)
    before = [np.array(weight) for weight in model.get_weights()]
    train, _, _ = task.training_data(config)
    model.fit(distribution.slice_for_process(train, placement), epochs=1, steps_per_epoch=1, verbose=0, shuffle=False)
    after = [np.array(weight) for weight in model.get_weights()]
    placement.end()
    return before, after


def largest_difference(a: list, b: list) -> float:
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))


report = {}
for name, (task_name, options) in MODELS.items():
    start_one, one = weights_after_one_step(task_name, options, 1)
    start_two, two = weights_after_one_step(task_name, options, 2)
    report[name] = {
        "start_difference": largest_difference(start_one, start_two),
        "step_difference": largest_difference(one, two),
        "step_size": largest_difference(one, start_one),
        "weights": len(one),
    }
print(json.dumps(report))
