"""The precision the recurrent kernels train in: float32, or bfloat16 where the CPU computes it natively.

On the torch backend the toolkit's LSTM and GRU layers run PyTorch's fused kernels (kerasrnn.torch.kernels).
On a CPU with bfloat16 units (AVX-512 BF16, AMX) oneDNN's bfloat16 LSTM trains a large layer markedly
faster than its float32 one, and a small one slower (docs/performance.md, "bfloat16 kernels"). With
`precision=bfloat16` the kernels compute in bfloat16 while the model trains: the sequence, states and
weights enter the kernel rounded to bfloat16 and its outputs leave in float32. Everything else stays
float32, as in Keras' mixed precision: the weights themselves, their gradients, Adam, the head, the loss
and the metrics. The saved model, its exports and every prediction after the fit compute in float32.

`auto` (the default) takes bfloat16 only where it was measured to pay: LSTM and GRU layers from the
sizes in `BFLOAT16_FROM_UNITS` up, on a torch backend whose CPU has bfloat16 units; float32 elsewhere.
"""

from __future__ import annotations

import contextlib

import keras

from kerasrnn.errors import UserError

# The smallest layers whose bfloat16 kernel trained faster than the float32 one (docs/performance.md).
BFLOAT16_FROM_UNITS = {"lstm": 64, "gru": 128}


def bfloat16_units() -> bool:
    """Whether this process's backend runs the fused kernels in bfloat16 natively: torch on a CPU with bfloat16
    units (oneDNN's check). On a GPU Keras' own path runs cuDNN's kernels in float32."""
    if keras.backend.backend() != "torch":
        return False
    import torch

    return (
        not torch.cuda.is_available()
        and torch.backends.mkldnn.is_available()
        and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    )


def kernels_can_run_bfloat16(config: dict) -> str | None:
    """None where the fused kernels can train `config`'s model in bfloat16, else why not."""
    if keras.backend.backend() != "torch":
        return f"the {keras.backend.backend()} backend (bfloat16 kernels are the torch backend's fused ones)"
    if not bfloat16_units():
        return "this CPU has no bfloat16 units (or the fit runs on a GPU)"
    if config["cell"] not in BFLOAT16_FROM_UNITS:
        return f"the {config['cell']} cell (bfloat16 kernels: {' and '.join(BFLOAT16_FROM_UNITS)})"
    if config["recurrent_dropout"] or config["unroll"]:
        return "recurrent dropout or unroll (Keras' own loop runs those, in float32)"
    return None


def training_precision(config: dict) -> tuple[str, str]:
    """(the precision the recurrent kernels train in, why), from `config["precision"]`; a UserError where
    bfloat16 is asked for and cannot run."""
    asked = config["precision"]
    if asked == "float32":
        return "float32", "asked for"
    obstacle = kernels_can_run_bfloat16(config)
    if asked == "bfloat16":
        if obstacle:
            raise UserError(f"precision bfloat16 cannot run here: {obstacle}; use -o precision=auto or float32")
        return "bfloat16", "asked for"
    if obstacle:
        return "float32", obstacle
    smallest = BFLOAT16_FROM_UNITS[config["cell"]]
    if config["units"] < smallest:
        return "float32", f"{config['units']} units: bfloat16 pays from {smallest} {config['cell']} units"
    return "bfloat16", f"{config['units']} {config['cell']} units on a CPU with bfloat16 units"


def fused_layers(model) -> list:
    """The toolkit's LSTM and GRU layers of `model`, inside Bidirectional wrappers too."""
    from kerasrnn.modeling import layers

    found = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, (layers.LSTM, layers.GRU)):
            found.append(layer)
    return found


@contextlib.contextmanager
def kernels_in(model, precision: str):
    """The fused kernels of `model` compute in `precision` inside the block, in float32 again after it."""
    chosen = fused_layers(model)
    for layer in chosen:
        layer.kernel_precision = precision
    try:
        yield
    finally:
        for layer in chosen:
            layer.kernel_precision = "float32"
