"""The forward pass of a toolkit model as plain torch calls on Keras' own variables, for the models it reproduces.

PyTorch's fused LSTM, GRU and tanh-RNN kernels (kerasrnn.torch.kernels), Dense and TimeDistributed(Dense)
heads, bidirectional and stacked layers, input dropout with the masks Keras' cells draw (the same random
numbers), and the sequences task's first layers (FoldSteps, SequenceInput): their NaN padding becomes each
sequence's length, and every recurrent layer after them runs the packed kernels (Keras' masked loop's results);
beside them, the convolution branch (StepConvolution, BatchNormalization, ReLU, the mean over the real steps)
and the Concatenate that joins it. The model's graph is walked layer by layer; each layer's function maps
(inputs, lengths) to (outputs, lengths); lengths None: no padding. The LSTM and
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


def step_mask(inputs, lengths):
    """(batch, steps, 1) ones on each sequence's own steps, zeros on its padding (None: no padding)."""
    if lengths is None:
        return None
    steps = torch.arange(inputs.shape[1], device=inputs.device)
    return (steps[None, :] < lengths[:, None]).unsqueeze(-1).to(inputs.dtype)


def convolution_forward(layer):
    """StepConvolution: the padding zeroed, then Keras' "same" convolution (the odd step of padding at the end)."""
    activation = ACTIVATIONS.get(layer.activation)
    if activation is None or layer.strides != (1,) or layer.dilation_rate != (1,) or layer.groups != 1:
        raise Unsupported(f"layer {layer.name}: a convolution other than stride 1, no dilation, one group")
    before = (layer.kernel_size[0] - 1) // 2
    after = layer.kernel_size[0] - 1 - before

    def forward(inputs, training, lengths=None):
        mask = step_mask(inputs, lengths)
        if mask is not None:
            inputs = inputs * mask
        padded = torch.nn.functional.pad(inputs.transpose(1, 2), (before, after))
        kernel = layer.kernel.value.permute(2, 1, 0)  # Keras' (width, inputs, filters) as torch's (filters, inputs, width)
        bias = layer.bias.value if layer.use_bias else None
        return activation(torch.nn.functional.conv1d(padded, kernel, bias).transpose(1, 2)), lengths

    return forward


def batch_normalization_forward(layer):
    """BatchNormalization over the last axis: training, the batch's moments over the real steps only (Keras'
    masked moments) and the moving statistics updated as Keras updates them; else the moving statistics."""
    last_axis = layer.axis in (-1, len(layer.output.shape) - 1)
    if not last_axis or layer.renorm or layer.synchronized:
        raise Unsupported(f"layer {layer.name}: batch normalisation other than over the last axis, or with renorm")
    tiny = keras_backend.epsilon()

    def forward(inputs, training, lengths=None):
        if training and layer.trainable:
            weights = step_mask(inputs, lengths)
            weights = torch.ones_like(inputs[..., :1]) if weights is None else weights
            axes = tuple(range(inputs.dim() - 1))
            count = torch.sum(weights.expand_as(inputs), dim=axes)
            mean = torch.sum(inputs * weights, dim=axes) / (count + tiny)
            variance = torch.sum(torch.square((inputs - mean) * weights), dim=axes) / (count + tiny)
            with torch.no_grad():
                momentum = layer.momentum
                layer.moving_mean.assign(layer.moving_mean.value * momentum + mean.detach() * (1.0 - momentum))
                layer.moving_variance.assign(layer.moving_variance.value * momentum + variance.detach() * (1.0 - momentum))
        else:
            mean, variance = layer.moving_mean.value, layer.moving_variance.value
        outputs = (inputs - mean) * torch.rsqrt(variance + layer.epsilon)
        if layer.scale:
            outputs = outputs * layer.gamma.value
        if layer.center:
            outputs = outputs + layer.beta.value
        return outputs, lengths

    return forward


def activation_forward(layer):
    activation = ACTIVATIONS.get(layer.activation)
    if activation is None:
        raise Unsupported(f"layer {layer.name}: activation {layer.activation.__name__}")
    return lambda inputs, training, lengths=None: (activation(inputs), lengths)


def mean_of_steps_forward(layer):
    """GlobalAveragePooling1D: the mean over each sequence's own steps."""
    if layer.data_format != "channels_last" or layer.keepdims:
        raise Unsupported(f"layer {layer.name}: pooling other than channels last, without keepdims")

    def forward(inputs, training, lengths=None):
        mask = step_mask(inputs, lengths)
        if mask is None:
            return torch.mean(inputs, dim=1), lengths
        return torch.sum(inputs * mask, dim=1) / torch.sum(mask, dim=1), lengths

    return forward


def concatenate_forward(layer):
    if layer.axis != -1:
        raise Unsupported(f"layer {layer.name}: concatenation other than on the last axis")
    return lambda inputs, training, lengths=None: (torch.cat(list(inputs), dim=-1), lengths)


def rescaling_forward(layer):
    if not all(isinstance(value, int | float) for value in (layer.scale, layer.offset)):
        raise Unsupported(f"layer {layer.name}: a rescaling by more than one number")
    return lambda inputs, training, lengths=None: (inputs * layer.scale + layer.offset, lengths)


# The layers computed here by type (the recurrent ones and Dense below, by kind).
LAYERS = {
    kerasrnn_layers.SequenceInput: sequence_input_forward,
    kerasrnn_layers.FoldSteps: fold_forward,
    kerasrnn_layers.StepConvolution: convolution_forward,
    keras_layers.BatchNormalization: batch_normalization_forward,
    keras_layers.Activation: activation_forward,
    keras_layers.GlobalAveragePooling1D: mean_of_steps_forward,
    keras_layers.Concatenate: concatenate_forward,
    keras_layers.Rescaling: rescaling_forward,
}


def layer_forward(layer, softmax: bool = True):
    """The torch function of one layer of the model, or Unsupported; `softmax=False`: logits of a softmax Dense."""
    if isinstance(layer, keras_layers.InputLayer):
        return None
    if type(layer) in LAYERS:
        return LAYERS[type(layer)](layer)
    if isinstance(layer, keras_layers.Bidirectional):
        return bidirectional_forward(layer)
    if isinstance(layer, keras_layers.RNN):
        return recurrent_forward(layer)
    if type(layer) is kerasrnn_layers.TimeDistributed:
        return dense_forward(layer.layer, softmax)  # a Dense on (batch, time, features) is the same matmul
    return dense_forward(layer, softmax)


def layer_reads(layer):
    """The ids of the tensors `layer` reads (a list for a layer of several inputs: Concatenate), or Unsupported.
    A mask handed along beside them is SequenceInput's, which the lengths carry."""
    if len(layer._inbound_nodes) != 1:
        raise Unsupported(f"layer {layer.name} is called more than once")
    arguments = layer._inbound_nodes[0].arguments
    if len(arguments.args) != 1 or set(arguments.kwargs) - {"mask", "training"}:
        raise Unsupported(f"layer {layer.name} reads other arguments than its input and the mask")
    given = arguments.args[0]
    return [id(tensor) for tensor in given] if isinstance(given, list | tuple) else id(given)


def model_forward(model, softmax: bool = True):
    """(the model's forward pass as torch functions on its graph, its last layer); Unsupported for anything but
    a graph of known layers from one input to one output. `softmax=False`: the last layer's softmax left out
    (logits). Each tensor carries its sequences' lengths (SequenceInput finds them; a concatenation takes its
    first input's)."""
    if len(model.inputs) != 1 or len(model.outputs) != 1 or model.losses:
        raise Unsupported("a model with several inputs, outputs or added losses")
    steps, masked = [], False
    for position, layer in enumerate(model.layers):
        masked = masked or type(layer) is kerasrnn_layers.SequenceInput
        if masked and type(layer) is kerasrnn_layers.TimeDistributed:
            raise Unsupported("per-step targets of padded sequences (Keras masks their loss and metrics)")
        function = layer_forward(layer, softmax or position < len(model.layers) - 1)
        if function is not None:
            steps.append((function, layer_reads(layer), id(layer.output)))
    first, last = id(model.inputs[0]), model.layers[-1]
    if id(last.output) != id(model.outputs[0]):
        raise Unsupported("a model whose last layer is not its output")

    def forward(inputs, training=True):
        values = {first: (inputs, None)}  # each tensor with its sequences' lengths (a folded series' rows differ)
        for function, reads, writes in steps:
            if isinstance(reads, list):
                given, lengths = [values[read][0] for read in reads], values[reads[0]][1]
            else:
                given, lengths = values[reads]
            values[writes] = function(given, training, lengths)
        return values[writes][0]

    return forward, last.layer if type(last) is kerasrnn_layers.TimeDistributed else last


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
