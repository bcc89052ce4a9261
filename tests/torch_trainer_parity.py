"""The toolkit's training step on torch (kerasrnn.torch.step) against Keras' own `train_step`.

Run by tests/test_step.py in a process of its own (the backend is fixed at import); prints one
JSON document: for each case, after 1 and after 20 steps on the same batches from the same weights and
seeds, the largest difference of the weights (absolute, and relative to how far the weights moved), of
the optimizer's variables, and of the loss and metrics; and for each refused case, the reason.
"""

import json
import os
import tempfile

os.environ["KERAS_BACKEND"] = "torch"

from kerasrnn.backend import select_backend  # noqa: E402

select_backend("torch")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from kerasrnn.tasks import get_task  # noqa: E402
from kerasrnn.tasks.adder import random_adder_examples  # noqa: E402
from kerasrnn.tasks.recall import random_recall_examples  # noqa: E402
from kerasrnn.torch import forward  # noqa: E402
from kerasrnn.torch import step as torch_step  # noqa: E402
from kerasrnn.training import precision  # noqa: E402
from kerasrnn.training.fitting import compile_model  # noqa: E402

DATA = tempfile.mkdtemp()  # the sequences task's training files: short multivariate, long univariate
STEPS_PER_EPOCH = 30  # the cosine schedule decays over epochs x this: it moves within 20 steps
CASES = {
    "mnist lstm": ("mnist", {"cell": "lstm", "units": 12}),
    "mnist gru bidirectional stacked": ("mnist", {"cell": "gru", "units": 8, "bidirectional": True, "layers": 2}),
    "mnist rnn dropout": ("mnist", {"cell": "rnn", "units": 12, "dropout": 0.25}),
    "mnist lstm constant rate, no clipping": ("mnist", {"cell": "lstm", "units": 12, "lr_schedule": "constant", "clipnorm": None}),
    "mnist gru clipped hard": ("mnist", {"cell": "gru", "units": 12, "clipnorm": 0.01}),
    "adder mse": ("adder", {"loss": "mse", "units": 5}),
    "adder bce bidirectional": ("adder", {"loss": "bce", "units": 4, "bidirectional": True}),
    "adder bce gru stacked cosine clipped": ("adder", {"loss": "bce", "cell": "gru", "layers": 2, "lr_schedule": "cosine",
                                                       "clipnorm": 0.5}),
    "adder rnn": ("adder", {"loss": "mse", "cell": "rnn", "units": 6}),
    "recall lstm readout": ("recall", {"cell": "lstm", "units": 2, "readout_units": 16, "candidates": 1}),
    "recall gru": ("recall", {"cell": "gru", "units": 5, "dropout": 0.1}),
    "mnist lstm bfloat16": ("mnist", {"cell": "lstm", "units": 12, "precision": "bfloat16"}),
    "mnist gru bidirectional bfloat16": ("mnist", {"cell": "gru", "units": 8, "bidirectional": True, "precision": "bfloat16"}),
    # The sequences task's convolution branch (its default) small, with an even width (Keras' "same" padding puts
    # the odd step at the end); the stacked case without it (a chain).
    "sequences masked bidirectional gru": ("sequences", {"train": f"{DATA}/short.npz", "units": 6, "dropout": 0.2,
                                                         "conv_filters": [6, 4], "conv_widths": [3, 2]}),
    "sequences masked stacked lstm": ("sequences", {"train": f"{DATA}/short.npz", "cell": "lstm", "units": 5, "layers": 2,
                                                    "bidirectional": False, "conv_filters": [], "conv_widths": []}),
    "sequences masked rnn regression": ("sequences", {"train": f"{DATA}/short.npz", "cell": "rnn", "units": 5,
                                                      "target": "value", "bidirectional": False, "conv_filters": [4],
                                                      "conv_widths": [4]}),
    "sequences masked folded gru": ("sequences", {"train": f"{DATA}/long.npz", "units": 4, "conv_filters": [5],
                                                  "conv_widths": [3]}),
}  # fmt: skip
REFUSED = {
    "recurrent dropout": ("recall", {"recurrent_dropout": 0.2}),
    "unroll": ("mnist", {"unroll": True, "units": 8}),
    "candidates": ("recall", {"units": 2, "candidates": 4}),
    "train_step=keras": ("adder", {"train_step": "keras"}),
    "jit_compile": ("adder", {"jit_compile": True}),
}


def write_sequences() -> None:
    """Training files for the sequences cases: 40 sequences of 3-12 steps and 3 features, 40 of 100-130 steps and 1."""
    rng = np.random.default_rng(3)
    for name, low, high, channels in (("short", 3, 13, 3), ("long", 100, 131, 1)):
        x = [rng.normal(size=(int(rng.integers(low, high)), channels)).astype(np.float32) for _ in range(40)]
        np.savez(f"{DATA}/{name}.npz", x=np.array(x, dtype=object), y=np.arange(40) % 3)


write_sequences()


def sequence_batch(config: dict, rng) -> tuple:
    """32 NaN-padded sequences of mixed lengths (one of the longest), as the task's batches are."""
    from kerasrnn.tasks.sequences import pad

    low, high = (100, 131) if config["fold_width"] > 1 else (3, 13)
    channels = len(config["feature_names"])
    x = [rng.normal(size=(int(rng.integers(low, high)), channels)).astype(np.float32) for _ in range(32)]
    y = rng.integers(0, 3, 32)
    return pad(x, channels, high - 1), (y[:, None].astype(np.float32) if config["kind"] == "value" else y.astype(np.int32))


def batches(task_name: str, config: dict, count: int, rng) -> list:
    if task_name == "sequences":
        return [sequence_batch(config, rng) for _ in range(count)]
    if task_name == "mnist":
        return [(rng.random((32, 28, 28), dtype=np.float32), rng.integers(0, 10, 32).astype(np.int32)) for _ in range(count)]
    if task_name == "adder":
        return [random_adder_examples(rng, 32, int(rng.integers(3, 9))) for _ in range(count)]
    examples = [random_recall_examples(rng, 32, int(rng.integers(4, 9)), config["index"]) for _ in range(count)]
    return [(x, y.astype(np.int32)) for x, y in examples]


def largest(pairs) -> float:
    return max(float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)))) for a, b in pairs)


def compare(task_name: str, options: dict, steps: int) -> dict:
    task = get_task(task_name)
    config = task.make_config(options)
    keras.utils.set_random_seed(config["seed"])
    with_keras = compile_model(task, config, steps_per_epoch=STEPS_PER_EPOCH)
    with_toolkit = compile_model(task, config, steps_per_epoch=STEPS_PER_EPOCH)
    with_toolkit.set_weights(with_keras.get_weights())
    data = batches(task_name, config, steps, np.random.default_rng(1))
    for model in (with_keras, with_toolkit):
        model._symbolic_build(data_batch=data[0])
    start = [weight.copy() for weight in with_keras.get_weights()]
    kernels = "bfloat16" if config["precision"] == "bfloat16" else "float32"  # both sides alike, as a fit sets it
    with precision.kernels_in(with_keras, kernels), precision.kernels_in(with_toolkit, kernels):
        return measure(with_keras, with_toolkit, data, start, config, steps)


def measure(with_keras, with_toolkit, data, start, config, steps) -> dict:

    keras.utils.set_random_seed(5)  # the dropout masks: the same random numbers on both sides
    for x, y in data:
        keras_logs = with_keras.train_step((torch.from_numpy(x), torch.from_numpy(y)))
    keras.utils.set_random_seed(5)
    step, reason = torch_step.toolkit_step(with_toolkit, config, distributed=False)
    assert step is not None, reason
    for x, y in data:
        toolkit_logs = step(torch.from_numpy(x), torch.from_numpy(y))
    step.write_metrics()

    weights = largest(zip(with_keras.get_weights(), with_toolkit.get_weights()))
    moved = largest(zip(with_keras.get_weights(), start))
    keras_results = {
        metric.name: float(metric.result()) for metric in [with_keras._loss_tracker, *with_keras._compile_metrics.metrics]
    }
    toolkit_results = {
        metric.name: float(metric.result()) for metric in [with_toolkit._loss_tracker, *with_toolkit._compile_metrics.metrics]
    }
    evaluation = compare_evaluation(with_toolkit, step, data) if steps > 1 else {}  # last: it leaves its own metrics
    x = data[0][0]
    predict = forward.inference_function(with_toolkit)
    evaluation["predict"] = largest([(with_toolkit.predict(x, verbose=0), predict(x))]) if predict else None
    return {
        "weights": weights,
        "weights_relative_to_change": weights / moved,
        "optimizer": largest((a.numpy(), b.numpy()) for a, b in zip(with_keras.optimizer.variables, with_toolkit.optimizer.variables)),
        "logs": max(abs(float(keras_logs[name]) - toolkit_logs[name]) for name in toolkit_logs),
        "metric_variables": max(abs(keras_results[name] - toolkit_results[name]) for name in keras_results),
        "names": sorted(toolkit_logs) == sorted(keras_results),
        "kernel_precisions": sorted({layer.kernel_precision for layer in precision.fused_layers(with_toolkit)}),
        **evaluation,
    }  # fmt: skip


class TestHooks(keras.callbacks.Callback):
    """What a callback sees of an evaluation: the hooks called, with their logs."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def on_test_begin(self, logs=None):
        self.calls.append(("begin", None))

    def on_test_batch_end(self, batch, logs=None):
        self.calls.append((batch, dict(logs or {})))

    def on_test_end(self, logs=None):
        self.calls.append(("end", dict(logs or {})))


def compare_evaluation(model, step, data) -> dict:
    """Keras' `evaluate` and the toolkit's (`TorchStep.evaluate`) on the same model and batches: the results,
    the metric variables they leave, and what a callback's test hooks receive."""
    hooks = {"keras": TestHooks(), "toolkit": TestHooks()}
    model.eval()
    keras_results = model.evaluate((pair for pair in data), verbose=0, return_dict=True, callbacks=[hooks["keras"]])
    keras_variables = [variable.numpy() for metric in model.metrics for variable in metric.variables]
    callbacks = keras.callbacks.CallbackList([hooks["toolkit"]], model=model)
    toolkit_results = step.evaluate(data, callbacks)
    toolkit_variables = [variable.numpy() for metric in model.metrics for variable in metric.variables]
    model.train()
    keras_calls, toolkit_calls = hooks["keras"].calls, hooks["toolkit"].calls
    return {
        "evaluate": max(abs(keras_results[name] - toolkit_results[name]) for name in keras_results),
        "evaluate_names": list(keras_results) == list(toolkit_results),
        "evaluate_metric_variables": max(  # totals summed in float32 batch by batch there, in float64 here
            float(np.max(np.abs(a - b) / np.maximum(1.0, np.abs(a)))) for a, b in zip(keras_variables, toolkit_variables)
        ),
        "evaluate_hooks": [call[0] for call in keras_calls] == [call[0] for call in toolkit_calls]
        and all(sorted(a[1] or {}) == sorted(b[1] or {}) for a, b in zip(keras_calls, toolkit_calls)),
        "evaluate_hook_logs": max(
            abs(a[1][name] - b[1][name]) for a, b in zip(keras_calls, toolkit_calls) if a[1] for name in a[1]
        ),
    }


def kernel_layout(tmp_dir: str) -> dict:
    """After the toolkit's steps: the LSTM kernels' memory (PyTorch's order), the kernel-sized copies a step
    makes (none: the layout is there to avoid them), and the model saved and loaded again."""
    task = get_task("mnist")
    config = task.make_config({"cell": "lstm", "units": 12, "bidirectional": True})
    model = compile_model(task, config, steps_per_epoch=STEPS_PER_EPOCH)
    data = batches("mnist", config, 3, np.random.default_rng(2))
    model._symbolic_build(data_batch=data[0])
    step, reason = torch_step.toolkit_step(model, config, distributed=False)
    assert step is not None, reason
    for x, y in data[:2]:
        step(torch.from_numpy(x), torch.from_numpy(y))
    kernel_shapes = {shape for weight in model.trainable_weights if len(weight.shape) == 2
                     for shape in (tuple(weight.shape), tuple(reversed(weight.shape)))}  # fmt: skip
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True) as profile:
        step(*(torch.from_numpy(part) for part in data[2]))
    copies = [event.input_shapes for event in profile.events() if event.name == "aten::copy_"]
    path = os.path.join(tmp_dir, "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    kernels = [layer.cell.kernel for layer in (model.layers[1].forward_layer, model.layers[1].backward_layer)]
    return {
        "kernels_in_torch_order": all(kernel.value.T.is_contiguous() for kernel in kernels),
        "kernel_sized_copies": sum(1 for shapes in copies if shapes and tuple(shapes[0]) in kernel_shapes),
        "copies_seen": len(copies),
        "loaded_weights": largest(zip(model.get_weights(), loaded.get_weights())),
        "loaded_outputs": largest([(model.predict(data[2][0], verbose=0), loaded.predict(data[2][0], verbose=0))]),
    }


def refusal(task_name: str, options: dict) -> str | None:
    task = get_task(task_name)
    config = task.make_config(options)
    from kerasrnn.training.fitting import training_model

    model = training_model(task, config, STEPS_PER_EPOCH)
    x, y = batches(task_name, config, 1, np.random.default_rng(0))[0]
    model._symbolic_build(data_batch=(x, y))
    INFERENCE_REFUSED[task_name, str(options)] = forward.inference_function(model) is None
    return torch_step.toolkit_step(model, config, distributed=False)[1]


INFERENCE_REFUSED = {}  # (task, options) -> whether the toolkit's prediction left the model to Keras


def main() -> None:
    results = {f"{name} {steps}": compare(*case, steps) for name, case in CASES.items() for steps in (1, 20)}
    with tempfile.TemporaryDirectory() as tmp_dir:
        results["layout"] = kernel_layout(tmp_dir)
    results["refused"] = {name: refusal(*case) for name, case in REFUSED.items()}
    results["inference refused"] = {name: INFERENCE_REFUSED[case[0], str(case[1])] for name, case in REFUSED.items()}
    results["bfloat16 units"] = precision.bfloat16_units()
    results["refused"]["distributed"] = torch_step.toolkit_step(None, {}, distributed=True)[1]
    torch_step.TESTED_KERAS, tested = ((3, 0), (3, 1)), torch_step.TESTED_KERAS
    results["refused"]["another Keras"] = refusal("adder", {})
    torch_step.TESTED_KERAS = tested
    print(json.dumps(results))


if __name__ == "__main__":
    main()
