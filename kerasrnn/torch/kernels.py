"""PyTorch's fused sequence kernels driven by Keras' own LSTM and GRU weights (torch backend only).

On a CPU, every Keras backend runs a recurrent layer as a loop over time steps; `torch._VF.lstm` and
`torch._VF.gru` (what `torch.nn.LSTM` and `torch.nn.GRU` call) run the whole sequence in one call, the
LSTM through oneDNN on CPUs. The weights are Keras' variables, rearranged with differentiable tensor
operations, so autograd reaches them and the optimizer trains them as usual; nothing is copied or
stored apart from them.

Layouts (checked against Keras to 1e-10 in float64 by tests/test_torch_kernels.py):
- LSTM: Keras and PyTorch order the gates alike (i, f, c, o): transpose the kernels; Keras' one bias is
  PyTorch's input bias, with a zero recurrent bias.
- GRU (reset_after=True): Keras orders the gates z, r, h and PyTorch r, z, n; Keras' bias has two rows,
  input and recurrent, which are PyTorch's two biases.
"""

from __future__ import annotations

import torch


def as_sequence_input(inputs, go_backwards: bool):
    """(batch, time, features), read from the end when `go_backwards` (as Keras' loop reads it)."""
    return torch.flip(inputs, dims=[1]) if go_backwards else inputs


def lstm_parameters(kernel, recurrent_kernel, bias) -> list:
    """[weight_ih, weight_hh, bias_ih, bias_hh] for torch._VF.lstm from Keras' LSTM weights."""
    return [kernel.T, recurrent_kernel.T, bias, torch.zeros_like(bias)]


def gru_parameters(kernel, recurrent_kernel, bias) -> list:
    """[weight_ih, weight_hh, bias_ih, bias_hh] for torch._VF.gru from Keras' GRU weights (reset_after=True)."""

    def reorder(weights, dim):  # Keras z, r, h -> PyTorch r, z, n
        update, reset, candidate = torch.chunk(weights, 3, dim=dim)
        return torch.cat([reset, update, candidate], dim=dim)

    return [reorder(kernel, 1).T, reorder(recurrent_kernel, 1).T, reorder(bias[0], 0), reorder(bias[1], 0)]


def rounded(precision: str, tensors: list) -> list:
    """`tensors` as the kernel reads them in `precision` (kerasrnn.training.precision): float32 as they are, or bfloat16
    copies (differentiable: the gradients come back to the float32 originals)."""
    if precision == "float32":
        return tensors
    return [tensor.to(torch.bfloat16) for tensor in tensors]


def run_lstm(inputs, state_h, state_c, kernel, recurrent_kernel, bias, go_backwards: bool, precision: str = "float32"):
    """(last output, every output, [h, c]) of one LSTM layer over the whole sequence, as Keras' inner loop returns
    them; computed in `precision`, returned in the inputs' dtype."""
    dtype = inputs.dtype
    sequence, state_h, state_c = rounded(precision, [as_sequence_input(inputs, go_backwards), state_h, state_c])
    outputs, h, c = torch._VF.lstm(
        sequence,
        (state_h.unsqueeze(0), state_c.unsqueeze(0)),
        rounded(precision, lstm_parameters(kernel, recurrent_kernel, bias)),
        True,  # has biases
        1,  # layers
        0.0,  # dropout between layers
        torch.is_grad_enabled(),  # train: keep what the backward pass needs
        False,  # bidirectional (Keras' Bidirectional runs two layers)
        True,  # batch first
    )
    outputs, h, c = outputs.to(dtype), h.to(dtype), c.to(dtype)
    return outputs[:, -1], outputs, [h.squeeze(0), c.squeeze(0)]


def run_gru(inputs, state, kernel, recurrent_kernel, bias, go_backwards: bool, precision: str = "float32"):
    """(last output, every output, [h]) of one GRU layer over the whole sequence, as Keras' inner loop returns
    them; computed in `precision`, returned in the inputs' dtype."""
    dtype = inputs.dtype
    sequence, state = rounded(precision, [as_sequence_input(inputs, go_backwards), state])
    outputs, h = torch._VF.gru(
        sequence,
        state.unsqueeze(0),
        rounded(precision, gru_parameters(kernel, recurrent_kernel, bias)),
        True,
        1,
        0.0,
        torch.is_grad_enabled(),
        False,
        True,
    )
    outputs, h = outputs.to(dtype), h.to(dtype)
    return outputs[:, -1], outputs, [h.squeeze(0)]
