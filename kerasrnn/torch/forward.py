"""The forward pass of a toolkit model as plain torch calls on Keras' own variables, for the models it reproduces.

PyTorch's fused LSTM, GRU and tanh-RNN kernels (kerasrnn.torch.kernels), Dense and TimeDistributed(Dense)
heads, bidirectional and stacked layers, input dropout with the masks Keras' cells draw (the same random
numbers), and the sequences task's first layers (FoldSteps, SequenceInput): their NaN padding becomes each
sequence's length, and every recurrent layer after them runs the packed kernels (Keras' masked loop's results).
Each step of the chain maps (inputs, lengths) to (outputs, lengths); lengths None: no padding. The LSTM and
tanh-RNN kernels are kept in memory in PyTorch's order (the same values, stored transposed), so that neither
the kernels nor their gradients and Adam slots are copied between layouts every step. Anything else raises
`Unsupported`, whose message the fit log prints; Keras' own path runs it then.
"""

from __future__ import annotations

import weakref

import numpy as np
import torch
from keras import activations
from keras import backend as keras_backend
from keras import layers as keras_layers

from kerasrnn.modeling import layers as kerasrnn_layers
from kerasrnn.torch import kernels

ACTIVATIONS = {
    activations.softmax: lambda x: torch.softmax(x, dim=-1),
    activations.sigmoid: torch.sigmoid,
    activations.relu: torch.relu,
    activations.tanh: torch.tanh,
    activations.linear: lambda x: x,
}


class Unsupported(Exception):
    """What the toolkit's step does not reproduce; the message says what, for the fit log."""


def recurrent_kind(layer) -> str:
    """'lstm', 'gru' or 'rnn' for a recurrent layer the fused kernels compute exactly; else Unsupported."""
    if isinstance(layer, kerasrnn_layers.LSTM) and kerasrnn_layers.fused_kernel_applies(layer):
        kind = "lstm"
    elif isinstance(layer, kerasrnn_layers.GRU) and kerasrnn_layers.fused_kernel_applies(layer) and layer.cell.reset_after:
        kind = "gru"
    elif type(layer) is keras_layers.SimpleRNN:
        cell = layer.cell
        if not (cell.use_bias and cell.activation is activations.tanh and not cell.recurrent_dropout and not layer.unroll):
            raise Unsupported(f"layer {layer.name}: a SimpleRNN other than tanh with bias and no recurrent dropout")
        kind = "rnn"
    else:
        raise Unsupported(f"layer {layer.name} ({type(layer).__name__}) with these settings")
    if layer.stateful or layer.return_state or layer.compute_dtype != "float32":
        raise Unsupported(f"layer {layer.name}: stateful, return_state or not float32")
    return kind


def run_rnn_tanh(inputs, state, kernel, recurrent_kernel, bias, go_backwards: bool):
    """(last output, every output) of Keras' SimpleRNN (tanh) through PyTorch's fused tanh-RNN kernel."""
    weights = kernels.rnn_parameters(kernel, recurrent_kernel, bias)
    outputs, _ = torch._VF.rnn_tanh(
        kernels.as_sequence_input(inputs, go_backwards), state.unsqueeze(0), weights,
        True, 1, 0.0, torch.is_grad_enabled(), False, True,
    )  # fmt: skip
    return outputs[:, -1], outputs


def transposed_storage(variable) -> None:
    """Keep `variable` (Keras' (inputs, gates) kernel) in memory as PyTorch's kernels read it, (gates, inputs):
    the same values, so `kernel.T` hands the kernel a contiguous tensor and its gradient comes back in the
    variable's own layout, where a row-major kernel costs two copies each way every step."""
    value = variable.value
    if not value.T.is_contiguous():
        value.data = value.data.T.contiguous().T


def recurrent_forward(layer):
    """A function (inputs, training) -> the layer's output, as the layer's `call` computes it."""
    kind, cell = recurrent_kind(layer), layer.cell
    if kind in ("lstm", "rnn"):  # the GRU's gates are reordered on the way in, a copy either way
        transposed_storage(cell.kernel)
        transposed_storage(cell.recurrent_kernel)

    def forward(inputs, training, lengths=None):
        # Keras draws the input dropout mask from the first step before every call (the random
        # numbers are consumed even when the mask is not applied): draw it the same way.
        mask = cell.get_dropout_mask(inputs[:, 0, :]) if cell.dropout else None
        cell.reset_dropout_mask()
        if training and mask is not None:
            inputs = inputs * mask.unsqueeze(1)
        state = inputs.new_zeros((inputs.shape[0], cell.units))
        weights = (cell.kernel.value, cell.recurrent_kernel.value, cell.bias.value)
        if lengths is not None:
            parameters = kernels.PARAMETERS[kind](*weights)
            states = [state, state] if kind == "lstm" else [state]
            last, outputs, _ = kernels.run_masked(kind, inputs, lengths, states, parameters, layer.go_backwards,
                                                  layer.zero_output_for_mask, getattr(layer, "kernel_precision", "float32"))  # fmt: skip
        elif kind == "lstm":
            last, outputs, _ = kernels.run_lstm(
                inputs, state, state, *weights, go_backwards=layer.go_backwards, precision=layer.kernel_precision
            )
        elif kind == "gru":
            last, outputs, _ = kernels.run_gru(
                inputs, state, *weights, go_backwards=layer.go_backwards, precision=layer.kernel_precision
            )
        else:
            last, outputs = run_rnn_tanh(inputs, state, *weights, go_backwards=layer.go_backwards)
        return (outputs if layer.return_sequences else last), lengths

    return forward


def bidirectional_forward(layer):
    if layer.merge_mode != "concat" or layer.return_state:
        raise Unsupported(f"layer {layer.name}: merge mode {layer.merge_mode!r} (concat is reproduced)")
    forward_pass, backward_pass = recurrent_forward(layer.forward_layer), recurrent_forward(layer.backward_layer)

    def forward(inputs, training, lengths=None):
        (ahead, _), (behind, _) = forward_pass(inputs, training, lengths), backward_pass(inputs, training, lengths)
        if layer.return_sequences:
            behind = torch.flip(behind, dims=[1])  # Keras lines the backward outputs up with the input steps
        return torch.cat([ahead, behind], dim=-1), lengths

    return forward


def dense_forward(layer, softmax: bool = True):
    if type(layer) is not keras_layers.Dense or layer.lora_enabled or layer.quantization_mode:
        raise Unsupported(f"layer {layer.name} ({type(layer).__name__})")
    activation = (
        ACTIVATIONS.get(layer.activation)
        if softmax or layer.activation is not activations.softmax
        else ACTIVATIONS[activations.linear]
    )
    if activation is None or not layer.use_bias:
        raise Unsupported(f"layer {layer.name}: activation {layer.activation.__name__} or no bias")

    def forward(inputs, training, lengths=None):
        return activation(torch.matmul(inputs, layer.kernel.value) + layer.bias.value), lengths

    return forward


def sequence_input_forward(layer):
    """SequenceInput: NaN padding to each sequence's length (None where no sequence is padded), then standardised."""

    def forward(inputs, training, lengths=None):
        missing = torch.isnan(inputs)
        present = ~missing.all(dim=-1)
        if not bool(present.all()):
            lengths = kernels.prefix_lengths(present)
            if lengths is None:
                raise ValueError("a batch padded other than after each sequence's steps (kerasrnn pads at the end)")
        values = torch.where(missing, torch.zeros_like(inputs), inputs)
        return (values - layer.mean.value) * layer.scale.value, lengths

    return forward


def fold_forward(layer):
    """FoldSteps: (batch, steps, 1) as rows of `width` values, the last row padded with NaN."""

    def forward(inputs, training, lengths=None):
        batch, steps, _ = inputs.shape
        rows = -(-steps // layer.width)
        padding = inputs.new_full((batch, rows * layer.width - steps, 1), float("nan"))
        return torch.cat([inputs, padding], dim=1).reshape(batch, rows, layer.width), lengths

    return forward


def layer_forward(layer, softmax: bool = True):
    """The torch function of one layer of the model, or Unsupported; `softmax=False`: logits of a softmax Dense."""
    if isinstance(layer, keras_layers.InputLayer):
        return None
    if type(layer) is kerasrnn_layers.SequenceInput:
        return sequence_input_forward(layer)
    if type(layer) is kerasrnn_layers.FoldSteps:
        return fold_forward(layer)
    if isinstance(layer, keras_layers.Bidirectional):
        return bidirectional_forward(layer)
    if isinstance(layer, keras_layers.RNN):
        return recurrent_forward(layer)
    if type(layer) is kerasrnn_layers.TimeDistributed:
        return dense_forward(layer.layer, softmax)  # a Dense on (batch, time, features) is the same matmul
    return dense_forward(layer, softmax)


def reads_the_layer_before(layer, previous, masked: bool) -> bool:
    """Whether `layer` reads `previous`'s output alone (after SequenceInput, Keras' graph also lists the mask it
    hands a recurrent layer: [tensor, mask])."""
    given = layer.input
    if masked and isinstance(given, list | tuple) and len(given) == 2:
        given = given[0]
    return given is previous.output


def model_forward(model, softmax: bool = True):
    """(the model's forward pass as a chain of torch functions, its last layer); Unsupported for anything but a
    chain of known layers. `softmax=False`: the last layer's softmax left out (logits)."""
    if len(model.inputs) != 1 or len(model.outputs) != 1 or model.losses:
        raise Unsupported("a model with several inputs, outputs or added losses")
    chain, previous, masked = [], None, False
    for position, layer in enumerate(model.layers):
        if previous is not None and not reads_the_layer_before(layer, previous, masked):
            raise Unsupported(f"layer {layer.name} does not read the layer before it")
        masked = masked or type(layer) is kerasrnn_layers.SequenceInput
        if masked and type(layer) is kerasrnn_layers.TimeDistributed:
            raise Unsupported("per-step targets of padded sequences (Keras masks their loss and metrics)")
        function = layer_forward(layer, softmax or position < len(model.layers) - 1)
        if function is not None:
            chain.append(function)
        previous = layer

    def forward(inputs, training=True):
        lengths = None
        for function in chain:
            inputs, lengths = function(inputs, training, lengths)
        return inputs

    last = previous.layer if type(previous) is kerasrnn_layers.TimeDistributed else previous
    return forward, last


_INFERENCE = weakref.WeakKeyDictionary()


def inference_function(model):
    """`predict(x)`: the model's outputs for a numpy batch through the toolkit's forward pass (the fused
    kernels, no Keras call or data adapter around them), or None where that pass does not reproduce the model
    (then Keras' `predict_on_batch` serves). Built once a model."""
    if model not in _INFERENCE:
        try:
            if torch.cuda.is_available():
                raise Unsupported("a GPU: Keras' own path runs cuDNN there")
            forward, _ = model_forward(model)
        except Unsupported:
            _INFERENCE[model] = None
        else:
            dtype = np.dtype(keras_backend.standardize_dtype(model.inputs[0].dtype))

            def predict(x):
                with torch.no_grad():
                    return forward(torch.from_numpy(np.array(x, dtype=dtype)), training=False).numpy()

            _INFERENCE[model] = predict
    return _INFERENCE[model]
