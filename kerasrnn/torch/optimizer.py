"""Keras' Adam on torch in one fused call: per-variable clipnorm as Keras computes it, the learning rate from
the optimizer's own schedule, and the update by PyTorch's fused Adam kernel on the optimizer's own slots."""

from __future__ import annotations

import torch
from keras import optimizers
from keras.optimizers import schedules

from kerasrnn.torch.forward import Unsupported


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
