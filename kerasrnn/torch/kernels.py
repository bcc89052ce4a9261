"""PyTorch's fused sequence kernels driven by Keras' own LSTM and GRU weights (torch backend only).

On a CPU, every Keras backend runs a recurrent layer as a loop over time steps; `torch._VF.lstm` and
`torch._VF.gru` (what `torch.nn.LSTM` and `torch.nn.GRU` call) run the whole sequence in one call, the
LSTM through oneDNN on CPUs. The weights are Keras' variables, rearranged with differentiable tensor
operations, so autograd reaches them and the optimizer trains them as usual; nothing is copied or
stored apart from them.

A mask that keeps each sequence's first steps (right padding, as a batch of sequences of different lengths
has) runs as a packed sequence (`run_masked`): each sequence through its own steps only, what Keras' masked loop
computes (the state kept over masked steps, their outputs as Keras fills them).

Layouts (checked against Keras to 1e-10 in float64 by tests/test_torch_kernels.py):
- LSTM: Keras and PyTorch order the gates alike (i, f, c, o): transpose the kernels; Keras' one bias is
  PyTorch's input bias, with a zero recurrent bias.
- GRU (reset_after=True): Keras orders the gates z, r, h and PyTorch r, z, n; Keras' bias has two rows,
  input and recurrent, which are PyTorch's two biases.
"""

from __future__ import annotations

import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence


def as_sequence_input(inputs, go_backwards: bool):
    """(batch, time, features), read from the end when `go_backwards` (as Keras' loop reads it)."""
    return torch.flip(inputs, dims=[1]) if go_backwards else inputs


def lstm_parameters(kernel, recurrent_kernel, bias) -> list:
    """[weight_ih, weight_hh, bias_ih, bias_hh] for torch._VF.lstm from Keras' LSTM weights."""
    return [kernel.T, recurrent_kernel.T, bias, torch.zeros_like(bias)]


def rnn_parameters(kernel, recurrent_kernel, bias) -> list:
    """[weight_ih, weight_hh, bias_ih, bias_hh] for torch._VF.rnn_tanh from Keras' SimpleRNN weights (as the LSTM's)."""
    return lstm_parameters(kernel, recurrent_kernel, bias)


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


def prefix_lengths(mask):
    """Each row's length where `mask` (batch, time) keeps the first steps of every row and at least one; else None
    (a mask with gaps, or a row of no steps: Keras' own loop computes those)."""
    if mask is None or mask.dim() != 2:
        return None
    mask = mask.to(torch.bool)
    lengths = mask.sum(dim=1)
    steps = torch.arange(mask.shape[1], device=mask.device)
    if int(lengths.min()) < 1 or not torch.equal(mask, steps[None, :] < lengths[:, None]):
        return None
    return lengths


def reversed_within(sequences, lengths):
    """Each row's first `length` steps in reverse order; the padding after them stays where it is."""
    steps = torch.arange(sequences.shape[1], device=sequences.device)[None, :]
    last = lengths.to(steps.device)[:, None] - 1
    index = torch.where(steps <= last, last - steps, steps)
    return torch.gather(sequences, 1, index[..., None].expand(-1, -1, sequences.shape[2]))


KERNELS = {"lstm": torch._VF.lstm, "gru": torch._VF.gru, "rnn": torch._VF.rnn_tanh}
PARAMETERS = {"lstm": lstm_parameters, "gru": gru_parameters, "rnn": rnn_parameters}


def run_masked(kind: str, inputs, lengths, states: list, parameters: list, go_backwards: bool,
               zero_output_for_mask: bool = False, precision: str = "float32"):  # fmt: skip
    """(last output, every output, states) of one recurrent layer (`kind`: lstm, gru or rnn) over right-padded
    sequences of `lengths` steps, as Keras' loop returns them under the mask `steps < length`: every sequence
    through its own steps (read from its last step when `go_backwards`), the states kept after its end, and the
    masked steps' outputs zeros, or (forward, zero_output_for_mask=False) the sequence's last output repeated.
    `parameters`: [weight_ih, weight_hh, bias_ih, bias_hh] in PyTorch's layout."""
    dtype, steps = inputs.dtype, inputs.shape[1]
    sequences = reversed_within(inputs, lengths) if go_backwards else inputs
    packed = pack_padded_sequence(sequences, lengths.cpu(), batch_first=True, enforce_sorted=False)
    data, *hidden = rounded(precision, [packed.data, *(state.unsqueeze(0)[:, packed.sorted_indices] for state in states)])
    hidden = tuple(hidden) if kind == "lstm" else hidden[0]
    flags = (True, 1, 0.0, torch.is_grad_enabled(), False)  # biases, one layer, no dropout, train, one direction
    output, *final = KERNELS[kind](data, packed.batch_sizes, hidden, rounded(precision, parameters), *flags)
    final = [state[0][packed.unsorted_indices].to(dtype) for state in final]
    outputs, _ = pad_packed_sequence(
        PackedSequence(output.to(dtype), packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices),
        batch_first=True, total_length=steps,
    )  # fmt: skip
    if go_backwards:  # Keras' order: the padding first (zeros), then the sequence from its last step
        outputs = torch.flip(reversed_within(outputs, lengths), dims=[1])
    elif not zero_output_for_mask:  # Keras carries the last output over the masked steps
        last_step = (lengths.to(outputs.device) - 1).clamp(max=steps - 1)
        index = torch.minimum(torch.arange(steps, device=outputs.device)[None, :], last_step[:, None])
        outputs = torch.gather(outputs, 1, index[..., None].expand(-1, -1, outputs.shape[2]))
    else:  # Keras' last output is then the last step's, zeros for a sequence shorter than the batch
        return outputs[:, -1], outputs, final
    return final[0], outputs, final
