"""Parity of kerasrnn's fused LSTM and GRU (torch backend) with Keras' own loop (use_cudnn=False).

Run by tests/test_torch_kernels.py in a process of its own (the backend is fixed at import); prints one
JSON document: for each case, the largest relative difference of outputs, final states and the gradient
of every weight, and whether the fused kernel ran.
"""

import contextlib
import json
import os

os.environ["KERAS_BACKEND"] = "torch"

import keras  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from kerasrnn.modeling import layers
from kerasrnn.torch import kernels  # noqa: E402
from kerasrnn.training import precision

KERAS_CELLS = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}
FUSED_CELLS = {"lstm": layers.LSTM, "gru": layers.GRU}
RNG = np.random.default_rng(0)


def relative_difference(a, b) -> float:
    a, b = (np.asarray(keras.ops.convert_to_numpy(t), dtype=np.float64) for t in (a, b))
    return float(np.max(np.abs(a - b)) / max(1e-12, np.max(np.abs(b))))


def build(cell: str, fused: bool, case: str, dtype: str = "float32") -> keras.Model:
    """A small model around one recurrent shape: the case says which (sequences, backwards, bidirectional...)."""
    make = FUSED_CELLS[cell] if fused else KERAS_CELLS[cell]
    options = {"units": 4, "dtype": dtype, "seed": 7}
    if not fused:
        options["use_cudnn"] = False
    inputs = keras.Input((6, 3), dtype=dtype)
    if case == "stacked":
        x = make(return_sequences=True, **options)(inputs)
        outputs = make(return_state=True, **options)(x)
    elif case == "bidirectional":
        outputs = keras.layers.Bidirectional(make(return_sequences=True, **options))(inputs)
    else:
        outputs = make(
            return_sequences=case in ("sequences", "backwards", "dropout"),
            go_backwards=case == "backwards",
            dropout=0.3 if case == "dropout" else 0.0,
            return_state=case != "dropout",
            **options,
        )(inputs)
    return keras.Model(inputs, outputs)


def outputs_and_gradients(model, x, training: bool):
    outputs = keras.tree.flatten(model(x, training=training))
    # torch.rand, not rand_like: rand_like lays the numbers out in the output's strides, which differ between paths
    weights = [torch.rand(output.shape, generator=torch.Generator().manual_seed(1)) for output in outputs]
    loss = sum((output * weight).sum() for output, weight in zip(outputs, weights))
    variables = [v.value for v in model.trainable_weights]
    return outputs, torch.autograd.grad(loss, variables)


def paired_models(cell: str, case: str):
    """(Keras' loop, the fused layer, inputs): the same random weights in both, away from the initializer's."""
    reference = build(cell, False, case)
    fused = build(cell, True, case)
    fused.set_weights([w + RNG.normal(0, 0.3, w.shape).astype(w.dtype) for w in reference.get_weights()])
    reference.set_weights(fused.get_weights())
    return reference, fused, RNG.normal(size=(5, 6, 3)).astype("float32")


@contextlib.contextmanager
def kernel_calls(cell: str):
    """The precision of each call of the cell's fused kernel inside the block, in a list."""
    precisions = []
    original = kernels.run_lstm if cell == "lstm" else kernels.run_gru

    def recording(*args, **kwargs):
        precisions.append(kwargs.get("precision"))
        return original(*args, **kwargs)

    setattr(kernels, original.__name__, recording)
    try:
        yield precisions
    finally:
        setattr(kernels, original.__name__, original)


def layer_case(cell: str, case: str) -> dict:
    reference, fused, x = paired_models(cell, case)
    with kernel_calls(cell) as calls:
        got, got_gradients = outputs_and_gradients(fused, x, training=case == "dropout")
    want, want_gradients = outputs_and_gradients(reference, x, training=case == "dropout")
    return {
        "fused_calls": len(calls),
        "outputs": max(relative_difference(a, b) for a, b in zip(got, want)),
        "gradients": max(relative_difference(a, b) for a, b in zip(got_gradients, want_gradients)),
    }


def bfloat16_case(cell: str, case: str) -> dict:
    """The fused layers training in bfloat16 (kerasrnn.training.precision) against Keras' float32 loop: bfloat16's rounding
    apart, float32 out, and float32 again after the fit's block."""
    reference, fused, x = paired_models(cell, case)
    with kernel_calls(cell) as asked:
        with precision.kernels_in(fused, "bfloat16"):
            got, got_gradients = outputs_and_gradients(fused, x, training=False)
        after, _ = outputs_and_gradients(fused, x, training=False)
    want, want_gradients = outputs_and_gradients(reference, x, training=False)
    return {
        "precisions": asked,
        "dtypes": sorted({str(output.dtype) for output in [*got, *got_gradients]}),
        "outputs": max(relative_difference(a, b) for a, b in zip(got, want)),
        "gradients": max(relative_difference(a, b) for a, b in zip(got_gradients, want_gradients)),
        "outputs_after": max(relative_difference(a, b) for a, b in zip(after, want)),
    }


def equations(cell: str, x, kernel, recurrent_kernel, bias, go_backwards: bool):
    """The cell's equations step by step in Keras' weight layout, in x's precision: the exact reference.

    (Keras' own loop is no float64 reference on torch: `keras.ops.matmul` of two float64 tensors computes
    in float32 there, Keras 3.15.)
    """
    steps = range(x.shape[1] - 1, -1, -1) if go_backwards else range(x.shape[1])
    h = c = torch.zeros((x.shape[0], recurrent_kernel.shape[0]), dtype=x.dtype)
    outputs = []
    for t in steps:
        if cell == "lstm":
            i, f, g, o = torch.chunk(x[:, t] @ kernel + h @ recurrent_kernel + bias, 4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
        else:
            x_z, x_r, x_h = torch.chunk(x[:, t] @ kernel + bias[0], 3, dim=1)
            h_z, h_r, h_h = torch.chunk(h @ recurrent_kernel + bias[1], 3, dim=1)
            z, r = torch.sigmoid(x_z + h_z), torch.sigmoid(x_r + h_r)
            h = z * h + (1 - z) * torch.tanh(x_h + r * h_h)
        outputs.append(h)
    return [torch.stack(outputs, dim=1), h] + ([c] if cell == "lstm" else [])


def float64_mapping(cell: str, go_backwards: bool) -> dict:
    """The kernel functions themselves in float64 (PyTorch's native kernels, not oneDNN) against the equations,
    and against Keras' own loop in float64 (which computes its products in float32)."""
    layer = KERAS_CELLS[cell](
        4, return_sequences=True, return_state=True, go_backwards=go_backwards, dtype="float64", use_cudnn=False
    )
    x = torch.tensor(RNG.normal(size=(5, 6, 3)))
    layer(x)
    layer.set_weights([w + RNG.normal(0, 0.3, w.shape) for w in layer.get_weights()])
    weights = [v.value for v in layer.trainable_weights]
    zeros = torch.zeros((5, 4), dtype=torch.float64)
    if cell == "lstm":
        _, outputs, states = kernels.run_lstm(x, zeros, zeros, *weights, go_backwards=go_backwards)
    else:
        _, outputs, states = kernels.run_gru(x, zeros, *weights, go_backwards=go_backwards)
    got = [outputs, *states]
    exact = equations(cell, x, *weights, go_backwards=go_backwards)
    return {
        "outputs": max(relative_difference(a, b) for a, b in zip(got, exact)),
        "keras_loop": max(relative_difference(a, b) for a, b in zip(got, keras.tree.flatten(layer(x)))),
    }


MASKED_CASES = {  # layer options over right-padded sequences of 6, 4, 1, 5 and 2 steps
    "last": {}, "sequences": {"return_sequences": True}, "backwards": {"go_backwards": True},
    "backwards sequences": {"go_backwards": True, "return_sequences": True},
    "zero outputs": {"return_sequences": True, "zero_output_for_mask": True},
    "zero outputs last": {"zero_output_for_mask": True}, "dropout": {"dropout": 0.3, "return_sequences": True},
    "states": {"return_state": True},
}  # fmt: skip


def masked_case(cell: str, case: str) -> dict:
    """A masked layer (the packed kernels) against Keras' masked loop: every output, state and gradient,
    the masked steps' outputs included. `case` "bidirectional": Keras' Bidirectional around it."""
    lengths = np.array([6, 4, 1, 5, 2])
    mask = np.arange(6)[None, :] < lengths[:, None]
    models = []
    for fused in (False, True):
        make = FUSED_CELLS[cell] if fused else KERAS_CELLS[cell]
        options = {"units": 4, "seed": 7, **({} if fused else {"use_cudnn": False})}
        inputs, given_mask = keras.Input((6, 3)), keras.Input((6,), dtype="bool")
        if case == "bidirectional":
            layer = keras.layers.Bidirectional(make(return_sequences=True, **options))
        else:
            layer = make(**options, **MASKED_CASES[case])
        models.append(keras.Model([inputs, given_mask], layer(inputs, mask=given_mask)))
    reference, fused = models
    fused.set_weights([w + RNG.normal(0, 0.3, w.shape).astype(w.dtype) for w in reference.get_weights()])
    reference.set_weights(fused.get_weights())
    x = [RNG.normal(size=(5, 6, 3)).astype("float32"), mask]
    calls = []
    original = kernels.run_masked

    def recording(*args, **kwargs):
        calls.append(args[0])
        return original(*args, **kwargs)

    kernels.run_masked = recording
    try:
        keras.utils.set_random_seed(3)
        got, got_gradients = outputs_and_gradients(fused, x, training=case == "dropout")
    finally:
        kernels.run_masked = original
    keras.utils.set_random_seed(3)
    want, want_gradients = outputs_and_gradients(reference, x, training=case == "dropout")
    return {
        "packed_calls": len(calls),
        "outputs": max(relative_difference(a, b) for a, b in zip(got, want)),
        "gradients": max(relative_difference(a, b) for a, b in zip(got_gradients, want_gradients)),
    }


def fallback_cases() -> dict:
    """Configurations the fused kernel must leave to Keras: each is counted, none may call the kernel."""
    x = RNG.normal(size=(2, 5, 3)).astype("float32")
    with kernel_calls("lstm") as calls:
        for options in ({"recurrent_dropout": 0.2}, {"unroll": True}, {"activation": "relu"}, {"use_cudnn": False}):
            layers.LSTM(4, **options)(x, training=True)
        layers.LSTM(4)(x, mask=np.array([[True] * 5, [True, False, True, False, False]]))  # a gap: Keras' loop
        layers.LSTM(4, dtype="float64")(x.astype("float64"))
    with kernel_calls("gru") as gru_calls:
        layers.GRU(4, reset_after=False)(x)
    return {"lstm_calls": len(calls), "gru_calls": len(gru_calls)}


if __name__ == "__main__":
    report = {
        f"{cell} {case}": layer_case(cell, case)
        for cell in ("lstm", "gru")
        for case in ("last", "sequences", "backwards", "bidirectional", "stacked", "dropout")
    }
    report.update({f"{cell} float64 backwards={b}": float64_mapping(cell, b) for cell in ("lstm", "gru") for b in (False, True)})
    report["fallbacks"] = fallback_cases()
    report.update({f"{cell} masked {case}": masked_case(cell, case) for cell in ("lstm", "gru")
                   for case in [*MASKED_CASES, "bidirectional"]})  # fmt: skip
    report["bfloat16 units"] = precision.bfloat16_units()
    report.update(
        {
            f"{cell} {case} bfloat16": bfloat16_case(cell, case)
            for cell in ("lstm", "gru")
            for case in ("sequences", "bidirectional")
        }
    )
    print(json.dumps(report))
