"""The toolkit's own training step and fit loop on the torch backend, for the models it reproduces exactly.

Keras' generic machinery on torch costs more than the work itself on these small models: its trainer,
its layer calls and functional graph walk, its per-variable clipping and its per-batch callback
dispatch (docs/performance.md measures each). For the models, losses, metrics and optimizer settings
the toolkit builds, `TorchStep` computes the same training step as Keras' `train_step` with plain
torch calls on Keras' own variables:

- the forward pass: PyTorch's fused LSTM, GRU and tanh-RNN kernels (kerasrnn.torch_kernels), Dense
  and TimeDistributed(Dense) heads, bidirectional and stacked layers, input dropout with the masks
  Keras' cells draw (the same random numbers);
- the LSTM and tanh-RNN kernels kept in memory in PyTorch's order (the same values, stored transposed),
  so that neither the kernels nor their gradients and Adam slots are copied between layouts every step;
- the loss: Keras' own formulas (probabilities clipped to [epsilon, 1 - epsilon], a mean over the batch);
- gradient clipping per variable (Adam's `clipnorm`) as Keras computes it, the learning rate from the
  optimizer's own schedule, and Keras' Adam update in one call of PyTorch's fused Adam kernel on the
  optimizer's own slots;
- the loss tracker and metrics written into Keras' metric variables.

`fit` runs Keras' callbacks (CallbackList, History, progress bar, checkpoints, backup) around that step
with in-memory batches, and validates with `TorchStep.evaluate`, Keras' `evaluate` computed the same way.
Whatever this module does not reproduce is refused by `toolkit_step` with a reason, and training stays
with Keras' own `model.fit`. `ThreadGovernor` picks PyTorch's thread count from the step times (a busy
machine). tests/test_torch_trainer.py checks the step against Keras' `train_step`, and the evaluation
against Keras' `evaluate`, for every supported case.
"""

from __future__ import annotations

import math
import time
import weakref

import keras
import numpy as np
import torch
from keras import activations, losses, metrics, optimizers
from keras import backend as keras_backend
from keras import layers as keras_layers
from keras.callbacks import Callback, CallbackList
from keras.optimizers import schedules

from kerasrnn import layers as kerasrnn_layers
from kerasrnn import torch_kernels
from kerasrnn.metrics import exact_match

# The Keras releases whose trainer, losses and optimizer this module was checked against (the tests).
TESTED_KERAS = ((3, 15), (3, 15))

ACTIVATIONS = {
    activations.softmax: lambda x: torch.softmax(x, dim=-1),
    activations.sigmoid: torch.sigmoid,
    activations.relu: torch.relu,
    activations.tanh: torch.tanh,
    activations.linear: lambda x: x,
}


class Unsupported(Exception):
    """What the toolkit's step does not reproduce; the message says what, for the fit log."""


# ---- the forward pass -------------------------------------------------------------------------
def keras_version_supported(version: str) -> bool:
    major_minor = tuple(int(part) for part in version.split(".")[:2])
    return TESTED_KERAS[0] <= major_minor <= TESTED_KERAS[1]


def recurrent_kind(layer) -> str:
    """'lstm', 'gru' or 'rnn' for a recurrent layer the fused kernels compute exactly; else Unsupported."""
    if isinstance(layer, kerasrnn_layers.LSTM) and kerasrnn_layers.fused_kernel_applies(layer, None):
        kind = "lstm"
    elif isinstance(layer, kerasrnn_layers.GRU) and kerasrnn_layers.fused_kernel_applies(layer, None) and layer.cell.reset_after:
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
    weights = [kernel.T, recurrent_kernel.T, bias, torch.zeros_like(bias)]
    outputs, _ = torch._VF.rnn_tanh(
        torch_kernels.as_sequence_input(inputs, go_backwards), state.unsqueeze(0), weights,
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

    def forward(inputs, training):
        # Keras draws the input dropout mask from the first step before every call (the random
        # numbers are consumed even when the mask is not applied): draw it the same way.
        mask = cell.get_dropout_mask(inputs[:, 0, :]) if cell.dropout else None
        cell.reset_dropout_mask()
        if training and mask is not None:
            inputs = inputs * mask.unsqueeze(1)
        state = inputs.new_zeros((inputs.shape[0], cell.units))
        weights = (cell.kernel.value, cell.recurrent_kernel.value, cell.bias.value)
        if kind == "lstm":
            last, outputs, _ = torch_kernels.run_lstm(
                inputs, state, state, *weights, go_backwards=layer.go_backwards, precision=layer.kernel_precision
            )
        elif kind == "gru":
            last, outputs, _ = torch_kernels.run_gru(
                inputs, state, *weights, go_backwards=layer.go_backwards, precision=layer.kernel_precision
            )
        else:
            last, outputs = run_rnn_tanh(inputs, state, *weights, go_backwards=layer.go_backwards)
        return outputs if layer.return_sequences else last

    return forward


def bidirectional_forward(layer):
    if layer.merge_mode != "concat" or layer.return_state:
        raise Unsupported(f"layer {layer.name}: merge mode {layer.merge_mode!r} (concat is reproduced)")
    forward_pass, backward_pass = recurrent_forward(layer.forward_layer), recurrent_forward(layer.backward_layer)

    def forward(inputs, training):
        ahead, behind = forward_pass(inputs, training), backward_pass(inputs, training)
        if layer.return_sequences:
            behind = torch.flip(behind, dims=[1])  # Keras lines the backward outputs up with the input steps
        return torch.cat([ahead, behind], dim=-1)

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

    def forward(inputs, training):
        return activation(torch.matmul(inputs, layer.kernel.value) + layer.bias.value)

    return forward


def layer_forward(layer, softmax: bool = True):
    """The torch function of one layer of the model, or Unsupported; `softmax=False`: logits of a softmax Dense."""
    if isinstance(layer, keras_layers.InputLayer):
        return None
    if isinstance(layer, keras_layers.Bidirectional):
        return bidirectional_forward(layer)
    if isinstance(layer, keras_layers.RNN):
        return recurrent_forward(layer)
    if type(layer) is kerasrnn_layers.TimeDistributed:
        return dense_forward(layer.layer, softmax)  # a Dense on (batch, time, features) is the same matmul
    return dense_forward(layer, softmax)


def model_forward(model, softmax: bool = True):
    """(the model's forward pass as a chain of torch functions, its last layer); Unsupported for anything but a
    chain of known layers. `softmax=False`: the last layer's softmax left out (logits)."""
    if len(model.inputs) != 1 or len(model.outputs) != 1 or model.losses:
        raise Unsupported("a model with several inputs, outputs or added losses")
    chain, previous = [], None
    for position, layer in enumerate(model.layers):
        if previous is not None and layer.input is not previous.output:
            raise Unsupported(f"layer {layer.name} does not read the layer before it")
        function = layer_forward(layer, softmax or position < len(model.layers) - 1)
        if function is not None:
            chain.append(function)
        previous = layer

    def forward(inputs, training=True):
        for function in chain:
            inputs = function(inputs, training)
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


# ---- loss and metrics ---------------------------------------------------------------------------
def clipped(probabilities):
    epsilon = keras_backend.epsilon()
    return torch.clip(probabilities, epsilon, 1.0 - epsilon)


def sparse_crossentropy(y_true, y_pred):
    """Keras' sparse categorical cross-entropy of probabilities, per sample."""
    y_pred = clipped(y_pred / torch.sum(y_pred, dim=-1, keepdim=True))
    return torch.nn.functional.nll_loss(torch.log(y_pred), y_true.long(), reduction="none")


def sparse_crossentropy_of_logits(y_true, logits):
    """`sparse_crossentropy` of softmax(logits), in one: log-softmax clipped where Keras clips the probabilities
    (the same value, and no gradient beyond the clip, as there), without the softmax's own pass."""
    epsilon = keras_backend.epsilon()
    log_probabilities = torch.clip(torch.log_softmax(logits, dim=-1), np.log(epsilon), np.log1p(-epsilon))
    return torch.nn.functional.nll_loss(log_probabilities, y_true.long(), reduction="none")


def binary_crossentropy(y_true, y_pred):
    return torch.mean(torch.nn.functional.binary_cross_entropy(clipped(y_pred), y_true, reduction="none"), dim=-1)


def mean_squared_error(y_true, y_pred):
    return torch.mean(torch.square(y_true - y_pred), dim=-1)


def loss_function(loss):
    """The per-sample loss of a Keras loss object the step reproduces; Unsupported otherwise."""
    if getattr(loss, "reduction", None) != "sum_over_batch_size":
        raise Unsupported(f"loss reduction {getattr(loss, 'reduction', None)!r}")
    settings = loss.get_config()
    if isinstance(loss, losses.SparseCategoricalCrossentropy):
        if settings["from_logits"] or settings.get("ignore_class") is not None or settings.get("axis", -1) != -1:
            raise Unsupported("sparse cross-entropy from logits, with an ignored class or another axis")
        return sparse_crossentropy
    if isinstance(loss, losses.BinaryCrossentropy):
        if settings["from_logits"] or settings["label_smoothing"] or settings.get("axis", -1) != -1:
            raise Unsupported("binary cross-entropy from logits, with label smoothing or another axis")
        return binary_crossentropy
    if isinstance(loss, losses.MeanSquaredError):
        return mean_squared_error
    raise Unsupported(f"loss {type(loss).__name__}")


def sparse_accuracy(y_true, y_pred):
    return (torch.argmax(y_pred, dim=-1) == y_true.reshape(y_pred.shape[:-1])).float()


def bit_accuracy(y_true, y_pred):
    """Keras' binary accuracy (threshold 0.5), averaged over each sample's outputs."""
    right = ((y_pred > 0.5).to(y_true.dtype) == y_true).float()
    return right.reshape(right.shape[0], -1).mean(dim=1)


def whole_answer_right(y_true, y_pred):
    wrong = (y_pred > 0.5).float() != y_true.float()
    return 1.0 - wrong.reshape(wrong.shape[0], -1).any(dim=1).float()


def metric_function(metric):
    """The per-sample values of a Keras metric the step reproduces (a Mean of them is what Keras reports)."""
    if isinstance(metric, metrics.SparseCategoricalAccuracy):
        return sparse_accuracy
    if isinstance(metric, metrics.BinaryAccuracy) and metric._fn_kwargs.get("threshold", 0.5) == 0.5:
        return bit_accuracy
    if type(metric) is metrics.MeanMetricWrapper and metric._fn is exact_match:
        return whole_answer_right
    raise Unsupported(f"metric {metric.name} ({type(metric).__name__})")


def compiled_metrics(model) -> list:
    """The compiled metric objects (built), in the order Keras reports them."""
    compiled = model._compile_metrics
    if compiled is None:
        return []
    if not compiled.built:
        raise Unsupported("metrics not built yet")
    if compiled._user_weighted_metrics:
        raise Unsupported("weighted metrics")
    return list(compiled.metrics)


# ---- the optimizer ------------------------------------------------------------------------------
def check_optimizer(optimizer) -> None:
    """Adam with per-variable clipnorm (or none) and any learning rate schedule: what Keras' torch Adam computes."""
    if not isinstance(optimizer, optimizers.Adam) or type(optimizer).__name__ != "Adam" or optimizer.amsgrad:
        raise Unsupported(f"optimizer {type(optimizer).__name__} (Adam is reproduced)")
    extras = {
        "weight decay": optimizer.weight_decay,
        "global_clipnorm": optimizer.global_clipnorm,
        "clipvalue": optimizer.clipvalue,
        "EMA": optimizer.use_ema,
        "gradient accumulation": optimizer.gradient_accumulation_steps,
        "loss scaling": optimizer.loss_scale_factor,
    }
    used = [name for name, value in extras.items() if value]
    if used:
        raise Unsupported(f"Adam with {', '.join(used)}")
    rate = optimizer._learning_rate
    if not isinstance(rate, (float, schedules.LearningRateSchedule)) and not hasattr(rate, "value"):
        raise Unsupported("a learning rate that is neither a number, a variable nor a schedule")


def clip_by_norm(gradients: list, clipnorm: float) -> None:
    """Keras' per-variable clipnorm, in place: each gradient times clipnorm / max(|g|, clipnorm).

    The norms come to Python in one transfer; gradients within the norm are left as they are (Keras
    multiplies them by clipnorm / clipnorm, a factor of 1 up to rounding).
    """
    norms = torch.stack(torch._foreach_norm(gradients)).tolist()
    for gradient, norm in zip(gradients, norms):
        if norm > clipnorm:
            gradient.mul_(clipnorm / norm)


class LearningRates:
    """The optimizer's learning rate at each iteration, from its own schedule, a block of iterations at a time.

    A Keras schedule is a dozen small tensor operations per call; called once on a vector of iterations it
    gives every rate of the block in one go (the same element-wise operations). Schedules that do not
    take a vector are called once per iteration.
    """

    def __init__(self, optimizer, block: int = 1024):
        self.optimizer, self.block, self.first, self.rates = optimizer, block, 0, []

    def at(self, iteration: int) -> float:
        rate = self.optimizer._learning_rate
        if not isinstance(rate, schedules.LearningRateSchedule):
            return float(rate)  # a number, or a variable that a callback may change
        if not self.first <= iteration < self.first + len(self.rates):
            self.first, self.rates = iteration, self.schedule_block(rate, iteration)
        return self.rates[iteration - self.first]

    def schedule_block(self, schedule, first: int) -> list[float]:
        try:
            rates = schedule(torch.arange(first, first + self.block))
            if tuple(rates.shape) == (self.block,):
                return rates.tolist()
        except Exception:  # a schedule written for one step at a time (ops.cond, Python branches)
            pass
        return [float(schedule(first))]


def same_layout(tensor, like):
    """`tensor`, laid out in memory as `like` is (the fused Adam kernel walks its four tensors' memory in step)."""
    if tensor.stride() == like.stride():
        return tensor
    return torch.empty_like(like).copy_(tensor)


def in_memory_order(tensor):
    """`tensor`, or the transpose that views its memory in order (a kernel stored transposed): the fused Adam
    kernel copies any tensor that is not contiguous, and an element-wise update is the same on either view."""
    return tensor.T if tensor.ndim == 2 and not tensor.is_contiguous() and tensor.T.is_contiguous() else tensor


class FusedAdam:
    """Keras' Adam update in one call of PyTorch's fused Adam kernel, on the Keras optimizer's own slots.

    Keras adds epsilon after the bias correction of the second moment (`m / (sqrt(v) + eps)` with the
    correction folded into the step size), PyTorch before it (`m / (sqrt(v / (1 - beta_2^t)) + eps)`):
    PyTorch's epsilon scaled by 1 / sqrt(1 - beta_2^t) each step makes the two the same update.
    """

    def __init__(self, optimizer, variables: list):
        self.optimizer = optimizer
        index = optimizer._get_variable_index
        self.variables = [variable.value for variable in variables]
        momentums = [optimizer._momentums[index(variable)].value for variable in variables]
        velocities = [optimizer._velocities[index(variable)].value for variable in variables]
        for variable, momentum, velocity in zip(self.variables, momentums, velocities):
            momentum.data, velocity.data = same_layout(momentum.data, variable), same_layout(velocity.data, variable)
        self.parameters = [in_memory_order(variable) for variable in self.variables]
        self.momentums, self.velocities = [in_memory_order(m) for m in momentums], [in_memory_order(v) for v in velocities]
        self.beta_1, self.beta_2 = float(optimizer.beta_1), float(optimizer.beta_2)
        self.epsilon = float(optimizer.epsilon)
        self.learning_rates = LearningRates(optimizer)

    def apply(self, gradients: list) -> None:
        """One update with `gradients` at the optimizer's current iteration, which it then counts."""
        iterations = self.optimizer._iterations.value
        learning_rate = self.learning_rates.at(int(iterations))
        step = float(iterations) + 1
        steps = [torch.tensor(step)] * len(self.parameters)
        gradients = [in_memory_order(same_layout(gradient, variable)) for gradient, variable in zip(gradients, self.variables)]
        torch._fused_adam_(
            self.parameters, gradients, self.momentums, self.velocities, [], steps,
            lr=learning_rate, beta1=self.beta_1, beta2=self.beta_2, weight_decay=0.0,
            eps=self.epsilon / (1.0 - self.beta_2**step) ** 0.5, amsgrad=False, maximize=False,
        )  # fmt: skip
        iterations.add_(1)


# ---- the step -----------------------------------------------------------------------------------
class TorchStep:
    """One training step of a compiled Keras model on torch, as Keras' `train_step` computes it.

    Built from the model (Unsupported when it is not reproduced); calling it trains on one batch and
    returns the logs Keras' step would return (loss and metrics over the epoch so far) as numbers. The
    running sums stay in Python between steps; `write_metrics` puts them into Keras' metric variables
    (the fit loop does at the end of each epoch, so `model.metrics` read then what Keras' would).
    """

    def __init__(self, model):
        if not keras_version_supported(keras.__version__):
            tested = "-".join(".".join(map(str, version)) for version in TESTED_KERAS)
            raise Unsupported(f"Keras {keras.__version__} (the toolkit's step is tested with Keras {tested})")
        if not model.compiled or model.optimizer is None:
            raise Unsupported("the model is not compiled")
        self.model = model
        self.forward, last_layer = model_forward(model)
        self.loss = loss_function(model.loss)
        self.from_logits = self.loss is sparse_crossentropy and last_layer.activation is activations.softmax
        if self.from_logits:  # the softmax and the loss in one: log-softmax, clipped as Keras clips probabilities
            self.forward, self.loss = model_forward(model, softmax=False)[0], sparse_crossentropy_of_logits
        check_optimizer(model.optimizer)
        self.optimizer = model.optimizer
        variables = list(model.trainable_weights)
        if not self.optimizer.built:
            self.optimizer.build(variables)
        self.adam = FusedAdam(self.optimizer, variables)
        self.values = [variable.value for variable in variables]
        self.means = [model._loss_tracker, *compiled_metrics(model)]  # Keras' Mean metrics, loss first
        self.metric_values = [metric_function(metric) for metric in self.means[1:]]
        self.names = ["loss", *(metric.name for metric in self.means[1:])]
        self.reset()

    def reset(self) -> None:
        """Start the epoch's running sums (Keras resets its metrics at every epoch's start)."""
        self.totals, self.count = [0.0] * len(self.means), 0

    def __call__(self, x, y) -> dict:
        y_pred = self.forward(x, training=True)
        loss = self.mean_loss(y, y_pred)
        for value in self.values:
            value.grad = None
        loss.backward()
        with torch.no_grad():
            gradients = [value.grad for value in self.values]
            if self.optimizer.clipnorm:
                clip_by_norm(gradients, self.optimizer.clipnorm)
            self.adam.apply(gradients)
            self.add_batch(loss, y, y_pred)
        return self.logs()

    def mean_loss(self, y, y_pred):
        per_sample = self.loss(y, y_pred)
        return torch.sum(per_sample) / per_sample.numel()

    def add_batch(self, loss, y, y_pred) -> None:
        """The batch's loss and metric values into the running sums (Keras weights the loss by the batch size)."""
        batch = y.shape[0]
        sums = torch.stack([loss * batch, *(torch.sum(values(y, y_pred)) for values in self.metric_values)]).tolist()
        self.totals = [total + value for total, value in zip(self.totals, sums)]
        self.count += batch

    def evaluate(self, batches, callbacks: CallbackList) -> dict:
        """Keras' `evaluate(batches, callbacks=callbacks, return_dict=True)` over numpy (x, y) pairs: the forward
        pass in inference mode (the layers draw their dropout masks' random numbers as Keras' do, unused), the
        same callback hooks, the results read from Keras' metric variables, which keep them as Keras' would."""
        test_begin, test_end = batch_listeners(callbacks, "on_test_batch_begin"), batch_listeners(callbacks, "on_test_batch_end")
        self.reset()
        callbacks.on_test_begin()
        with torch.no_grad():
            for index, (x, y) in enumerate(batches):
                for callback in test_begin:
                    callback.on_test_batch_begin(index)
                x, y = torch.from_numpy(x), torch.from_numpy(y)
                y_pred = self.forward(x, training=False)
                self.add_batch(self.mean_loss(y, y_pred), y, y_pred)
                for callback in test_end:
                    callback.on_test_batch_end(index, self.logs())
        self.write_metrics()
        results = {name: float(value) for name, value in sorted(self.model.get_metrics_result().items())}  # as Keras
        callbacks.on_test_end(results)
        return results

    def logs(self) -> dict:
        """The loss and metrics over the epoch so far, as Keras' `metric.result()` gives them."""
        return {name: total / self.count if self.count else 0.0 for name, total in zip(self.names, self.totals)}

    def write_metrics(self) -> None:
        """The running sums into Keras' metric variables (Mean: total and count)."""
        for metric, total in zip(self.means, self.totals):
            metric.total.assign(total)
            metric.count.assign(self.count)


# ---- threads on a shared machine ----------------------------------------------------------------
class ThreadGovernor:
    """PyTorch's CPU thread count during a fit, chosen from how long the steps take.

    PyTorch's threads spin while they wait for each other: beside another busy process, a thread that
    shares its core with it holds the others up and a step becomes many times slower (beside a second
    PyTorch process, a hundred times and more), while one thread alone keeps most of its speed
    (docs/performance.md, "A busy machine"). Waiting passively instead costs threefold on a quiet
    machine. So the steps are timed in windows:

    - the fit starts with one window on one thread, then tries all threads and keeps the faster;
    - on all threads, two windows in a row much slower than the best seen try one thread (one slow window
      is this kind of VM's hiccup more often than a busy process, and a probe of one thread costs a quiet
      epoch several percent);
    - on one thread, only a re-check of all threads, ever more rarely while nothing changes and never
      before the last one's cost is repaid tenfold, tries them again (one thread's windows stay slower
      than their quiet best for as long as the load lasts);
    - a window on all threads ends as soon as it is clearly slower than its reference (the best window
      seen, or during a probe the other count's last one): a collapsed step can take a second, and a
      whole window of them most of a minute.

    Inactive where only one thread exists or the user set OMP_NUM_THREADS.
    """

    def __init__(self, window: int = 24, slower: float = 1.3, longest_interval: int = 128):
        import os

        self.window, self.slower, self.longest_interval = window, slower, longest_interval
        self.counts = (torch.get_num_threads(), 1)
        self.active = self.counts[0] > 1 and "OMP_NUM_THREADS" not in os.environ
        self.best = dict.fromkeys(self.counts, float("inf"))
        self.last = dict.fromkeys(self.counts, float("inf"))
        self.current, self.probing, self.interval, self.since_check = self.counts[0], False, 4, 0
        self.slow_windows = 0
        if self.active:
            self.use(self.counts[1])  # one thread first: its window bounds how long one on all threads may run
        self.restart()

    def restart(self) -> None:
        """Begin a new window (at each epoch's start: validation and checkpoints are not steps)."""
        self.steps, self.started = 0, time.perf_counter()

    def tick(self) -> None:
        """One step done."""
        if not self.active:
            return
        self.steps += 1
        elapsed = time.perf_counter() - self.started
        other = self.counts[1] if self.current == self.counts[0] else self.counts[0]
        on_all_threads = self.current == self.counts[0]
        reference = self.last[other] if self.probing else self.best[self.current]
        clearly_slower = on_all_threads and elapsed > self.slower * self.window * reference
        if self.steps < self.window and not clearly_slower:
            return
        seconds = elapsed / self.steps
        self.last[self.current] = seconds
        self.best[self.current] = min(self.best[self.current], seconds)
        if self.probing:
            self.probing, self.since_check = False, 0
            if self.last[self.current] < self.last[other]:
                self.interval = 4
            else:
                self.use(other)
                # Ever rarer re-checks, and none before this one's cost is repaid tenfold: beside a second
                # PyTorch process a single step on all threads costs as much as a hundred on one.
                repaid = math.ceil(10 * elapsed / (self.window * self.last[other]))
                self.interval = min(max(2 * self.interval, repaid), self.longest_interval)
        else:
            self.since_check += 1
            self.slow_windows = self.slow_windows + 1 if seconds > self.slower * self.best[self.current] else 0
            load_arrived = on_all_threads and self.slow_windows >= 2
            due = not on_all_threads and self.since_check >= self.interval
            if self.best[other] == float("inf") or load_arrived or due:
                self.use(other)
                self.probing, self.slow_windows = True, 0
        self.restart()

    def use(self, count: int) -> None:
        self.current = count
        torch.set_num_threads(count)


# ---- batches and the fit loop -------------------------------------------------------------------
def batch_listeners(callbacks: CallbackList, hook: str) -> list:
    """The callbacks that act on `hook` (Keras' base class does nothing there): only they are called per batch."""
    aliases = {"on_train_batch_begin": "on_batch_begin", "on_train_batch_end": "on_batch_end"}
    return [
        callback
        for callback in callbacks.callbacks
        if getattr(type(callback), hook) is not getattr(Callback, hook)
        or (hook in aliases and getattr(type(callback), aliases[hook]) is not getattr(Callback, aliases[hook]))
    ]


def fit(model, step: TorchStep, batches, epochs: int, steps_per_epoch: int, validation_data, callbacks, verbose):
    """Keras' TorchTrainer.fit with `step` for its training step and `batches(epoch)` (numpy (x, y) pairs,
    `Task.training_batches`) for its data: the same callbacks in the same order with the same logs, and
    `step.evaluate` over `validation_data` (numpy (x, y) pairs) for validation; returns the History."""
    callback_list = CallbackList(
        callbacks, add_history=True, add_progbar=verbose != 0, verbose=verbose, epochs=epochs, steps=steps_per_epoch, model=model
    )
    begin, end = batch_listeners(callback_list, "on_train_batch_begin"), batch_listeners(callback_list, "on_train_batch_end")
    model.stop_training = False
    training_logs = {}
    threads = ThreadGovernor()
    callback_list.on_train_begin()
    for epoch in range(model._initial_epoch or 0, epochs):
        model.reset_metrics()
        step.reset()
        callback_list.on_epoch_begin(epoch)
        model.train()
        threads.restart()
        logs = {}
        for index, (x, y) in enumerate(batches(epoch)):
            for callback in begin:
                callback.on_train_batch_begin(index)
            logs = step(torch.from_numpy(x), torch.from_numpy(y))
            threads.tick()
            for callback in end:
                callback.on_train_batch_end(index, logs)
            if model.stop_training:
                break
        step.write_metrics()
        epoch_logs = dict(logs)
        model.eval()
        if validation_data is not None:
            scores = step.evaluate(validation_data, callback_list)
            epoch_logs.update({f"val_{name}": value for name, value in scores.items()})
        callback_list.on_epoch_end(epoch, epoch_logs)
        training_logs = epoch_logs
        if model.stop_training:
            break
    callback_list.on_train_end(logs=training_logs)
    threads.use(threads.counts[0])  # evaluation and prediction after the fit start from the usual count
    return model.history


def dataset_batches(dataset, steps_per_epoch: int):
    """`batches(epoch)` from an endless tf.data pipeline (augmented images): its next `steps_per_epoch` batches."""
    iterator = dataset.as_numpy_iterator()

    def batches(epoch: int):
        return (next(iterator) for _ in range(steps_per_epoch))

    return batches


def toolkit_step(model, config: dict, distributed: bool):
    """(the toolkit's step for `model`, None) where it reproduces Keras' step, else (None, the reason)."""
    if keras.backend.backend() != "torch":
        return None, "the toolkit's step is for the torch backend"
    refusals = {
        "asked for with train_step=keras": lambda: config.get("train_step", "auto") == "keras",
        "a distributed fit": lambda: distributed,
        "a GPU (there Keras' own step runs cuDNN's kernels)": torch.cuda.is_available,
        "jit_compile": lambda: model.jit_compile,
        "steps_per_execution > 1": lambda: model.steps_per_execution != 1,
        "side-by-side candidates": lambda: config.get("candidates", 1) > 1,
    }
    for reason, applies in refusals.items():
        if applies():
            return None, reason
    try:
        return TorchStep(model), None
    except Unsupported as reason:
        return None, str(reason)
