"""Random restarts at the price of one fit: train many copies of a small model side by side, keep the best.

A very small recurrent model (recall's LSTM with 2 units) succeeds or fails by
where it starts: most starting points settle on a poor solution, a few find a
good one (docs/recall.md). Trying several starts one after another multiplies
the fit time; for models this small nearly all of a step's time is fixed
overhead, so here N candidates train at once as one wider model:

- one recurrent layer of N*u units whose recurrent kernel is block diagonal
  (a constraint keeps it so after every update), so candidate k's state only
  ever reads candidate k's state;
- one grouped head per candidate (`GroupedDense`: candidate k's own weights);
- the loss is the mean of the candidates' losses, so candidate k's gradient
  comes from its own loss alone. Adam's steps are per weight, so the
  candidates train as independent restarts on the same batches; only gradient
  clipping (clipnorm, per variable in Keras) sees the joined weights.

Candidate k starts from exactly the weights the ordinary model would get with
seed `candidate_seed(seed, k)` (candidate 0: the run's own seed). After the
fit the candidate with the best validation accuracy is copied into an
ordinary model of `units` units, which is what the run saves, evaluates and
exports: the restarts cost training time only.
"""

from __future__ import annotations

import functools

import keras
import numpy as np
from keras import ops

from kerasrnn.errors import require


def candidate_seed(seed: int, index: int) -> int:
    """Candidate 0 starts where a plain fit with `seed` starts; the others from seeds derived from it."""
    if index == 0:
        return seed
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0] % (2**31 - 1))


class BlockDiagonal(keras.constraints.Constraint):
    """Zero every recurrent weight that would connect two different candidates.

    The recurrent kernel is (N*u, gates*N*u), gate-major: column g*N*u + j
    belongs to unit j of gate g, and unit j to candidate j // u.
    """

    def __init__(self, candidates: int, units: int, gates: int):
        self.candidates, self.units, self.gates = candidates, units, gates
        width = candidates * units
        rows = np.arange(width)[:, None] // units
        columns = (np.arange(gates * width)[None, :] % width) // units
        self.mask = (rows == columns).astype("float32")

    def __call__(self, weights):
        return weights * ops.cast(self.mask, weights.dtype)

    def get_config(self):
        return {"candidates": self.candidates, "units": self.units, "gates": self.gates}


class GroupedDense(keras.layers.Layer):
    """(batch, N, in) -> (batch, N, out): a separate Dense layer for each of N candidates."""

    def __init__(self, groups: int, units: int, activation=None, **kwargs):
        super().__init__(**kwargs)
        self.groups, self.units = groups, units
        self.activation = keras.activations.get(activation)

    def build(self, input_shape):
        # Overwritten by `insert_candidate` with each candidate's own Dense initialisation.
        self.kernel = self.add_weight(name="kernel", shape=(self.groups, input_shape[-1], self.units), initializer="zeros")
        self.bias = self.add_weight(name="bias", shape=(self.groups, self.units), initializer="zeros")

    def call(self, x):
        return self.activation(ops.einsum("bgi,gio->bgo", x, self.kernel) + self.bias)

    def get_config(self):
        return {
            **super().get_config(),
            "groups": self.groups,
            "units": self.units,
            "activation": keras.activations.serialize(self.activation),
        }


class CandidateLoss(keras.losses.Loss):
    """The task's loss for each candidate's prediction of the same target, averaged over candidates."""

    def __init__(self, loss: keras.losses.Loss, name: str = "candidate_loss"):
        super().__init__(name=name)
        self.loss = type(loss).from_config({**loss.get_config(), "reduction": None})  # per example and candidate

    def call(self, y_true, y_pred):  # y_true (batch,), y_pred (batch, N, classes)
        candidates = ops.shape(y_pred)[1]
        targets = ops.repeat(ops.expand_dims(y_true, 1), candidates, axis=1)
        return ops.mean(self.loss(targets, y_pred), axis=-1)


class BestCandidateAccuracy(keras.metrics.Metric):
    """Accuracy of the candidate that is best on the data seen so far (so `val_accuracy` is the best one's)."""

    def __init__(self, candidates: int, name: str = "accuracy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.candidates = candidates
        self.correct = self.add_variable(shape=(candidates,), initializer="zeros", name="correct")
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")

    def update_state(self, y_true, y_pred, sample_weight=None):
        right = candidate_hits(y_true, y_pred)
        self.correct.assign_add(ops.sum(ops.cast(right, "float32"), axis=0))
        self.total.assign_add(ops.cast(ops.shape(right)[0], "float32"))

    def result(self):
        return ops.max(self.correct) / ops.maximum(self.total, 1.0)

    def reset_state(self):
        self.correct.assign(ops.zeros((self.candidates,)))
        self.total.assign(0.0)


def candidate_hits(y_true, y_pred):
    """(batch, N) booleans: did candidate k predict example i's class?"""
    predicted = ops.argmax(y_pred, axis=-1)
    return ops.equal(predicted, ops.cast(ops.expand_dims(ops.reshape(y_true, (-1,)), 1), predicted.dtype))


# ---- the pool model ------------------------------------------------------------
def template_parts(template: keras.Model):
    """(recurrent layer, [Dense layers]) of a model Input -> one recurrent layer -> Dense ... Dense."""
    layers = [layer for layer in template.layers if not isinstance(layer, keras.layers.InputLayer)]
    recurrent, head = layers[0], layers[1:]
    require(
        isinstance(recurrent, keras.layers.RNN) and not recurrent.return_sequences,
        "candidates need one unidirectional recurrent layer answering from its final state (--layers 1, no --bidirectional)",
    )
    require(all(type(layer) is keras.layers.Dense for layer in head), "candidates need a head of Dense layers only")
    return recurrent, head


def gate_count(recurrent: keras.layers.RNN) -> int:
    return int(recurrent.cell.recurrent_kernel.shape[-1]) // recurrent.cell.units


def build_pool(template: keras.Model, candidates: int) -> keras.Model:
    """The side-by-side model of `candidates` copies of `template`: output (batch, candidates, classes)."""
    recurrent, head = template_parts(template)
    units = recurrent.cell.units
    settings = {**recurrent.get_config(), "units": candidates * units, "name": recurrent.name}
    settings["recurrent_constraint"] = BlockDiagonal(candidates, units, gate_count(recurrent))
    inputs = keras.Input(shape=template.input_shape[1:], name=template.inputs[0].name)
    x = type(recurrent).from_config(settings)(inputs)
    x = keras.layers.Reshape((candidates, units), name="candidates")(x)
    for dense in head:
        x = GroupedDense(candidates, dense.units, dense.get_config()["activation"], name=dense.name)(x)
    return keras.Model(inputs, x, name=f"{template.name}_candidates")


def candidate_columns(index: int, units: int, width: int, gates: int) -> np.ndarray:
    """The columns of candidate `index`'s units in a gate-major kernel of `gates` blocks of `width` units."""
    return np.array([gate * width + index * units + unit for gate in range(gates) for unit in range(units)])


def pool_parts(pool: keras.Model, head_size: int):
    layers = [layer for layer in pool.layers if not isinstance(layer, (keras.layers.InputLayer, keras.layers.Reshape))]
    return layers[0], layers[1 : 1 + head_size]


def copy_candidate(pool: keras.Model, index: int, single: keras.Model, into_pool: bool) -> None:
    """Copy `single`'s weights into candidate `index` of `pool` (into_pool) or candidate `index` into `single`."""
    recurrent, head = template_parts(single)
    pool_recurrent, pool_head = pool_parts(pool, len(head))
    units, gates = recurrent.cell.units, gate_count(recurrent)
    columns = candidate_columns(index, units, pool_recurrent.cell.units, gates)
    rows = np.arange(index * units, (index + 1) * units)
    pairs = [
        (pool_recurrent.cell.kernel, recurrent.cell.kernel, (slice(None), columns)),
        (pool_recurrent.cell.recurrent_kernel, recurrent.cell.recurrent_kernel, np.ix_(rows, columns)),
    ]
    if recurrent.cell.use_bias:
        pairs.append((pool_recurrent.cell.bias, recurrent.cell.bias, (Ellipsis, columns)))
    for grouped, dense in zip(pool_head, head):
        pairs += [(grouped.kernel, dense.kernel, index), (grouped.bias, dense.bias, index)]
    for pool_variable, single_variable, where in pairs:
        if into_pool:
            values = np.array(pool_variable.numpy())
            values[where] = single_variable.numpy()
            pool_variable.assign(values)
        else:
            single_variable.assign(np.asarray(pool_variable.numpy())[where])


def initialize_pool(pool: keras.Model, build_single, seed: int, candidates: int) -> None:
    """Start candidate k from the ordinary model's own initialisation under `candidate_seed(seed, k)`."""
    for variable in pool.weights:
        variable.assign(np.zeros(variable.shape, dtype="float32"))  # nothing between candidates (BlockDiagonal)
    for index in range(candidates):
        keras.utils.set_random_seed(candidate_seed(seed, index))
        copy_candidate(pool, index, build_single(), into_pool=True)
    keras.utils.set_random_seed(seed)


def candidate_accuracies(pool: keras.Model, dataset) -> list[float]:
    """Each candidate's accuracy on a (x, y) dataset."""
    correct, total = 0, 0
    for x, y in dataset:
        hits = np.asarray(candidate_hits(np.asarray(y), pool.predict_on_batch(x)))
        correct, total = correct + hits.sum(axis=0), total + len(hits)
    return [float(value) for value in np.asarray(correct) / max(total, 1)]


def best_candidate(pool: keras.Model, build_single, dataset) -> tuple[keras.Model, dict]:
    """(the best candidate on `dataset` as an ordinary model, a summary for metrics.json)."""
    accuracies = candidate_accuracies(pool, dataset)
    chosen = int(np.argmax(accuracies))
    single = build_single()
    copy_candidate(pool, chosen, single, into_pool=False)
    summary = {"count": len(accuracies), "chosen": chosen, "validation_accuracy": [round(a, 4) for a in accuracies]}
    return single, summary


# ---- how a fit uses candidates: one plan object, so generic training never branches on them -------------
class OneModel:
    """The ordinary fit: one model; the epoch with the lowest validation loss is kept."""

    count = 1
    checkpoint_monitor = {"monitor": "val_loss", "mode": "min"}

    def build(self, task, config: dict, compile_model):
        return compile_model(task.build_model(config))

    def keep_best(self, model, task, config: dict, validation, compile_model, log):
        """(the model the run saves, what metrics.json records about the choice)."""
        return model, {}


class CandidatePool:
    """`count` candidates side by side; the epoch with the best candidate's validation accuracy is kept (the
    mean loss over candidates says little about the one that will be kept), then that candidate alone."""

    checkpoint_monitor = {"monitor": "val_accuracy", "mode": "max"}

    def __init__(self, count: int):
        self.count = count

    def build(self, task, config: dict, compile_model):
        build_single = functools.partial(task.build_model, config)
        pool = build_pool(build_single(), self.count)
        initialize_pool(pool, build_single, config["seed"], self.count)
        loss, _ = task.loss_and_metrics(config)
        return compile_model(pool, loss_and_metrics=(CandidateLoss(loss), [BestCandidateAccuracy(self.count)]))

    def keep_best(self, model, task, config: dict, validation, compile_model, log):
        single, summary = best_candidate(model, functools.partial(task.build_model, config), validation)
        log(f"kerasrnn: kept candidate {summary['chosen']} of {self.count} (best validation accuracy)")
        return compile_model(single), {"candidates": summary}


def training_plan(count: int) -> OneModel | CandidatePool:
    """How a fit trains `count` starting points (a task's `candidates` hook says how many)."""
    return CandidatePool(count) if count > 1 else OneModel()
