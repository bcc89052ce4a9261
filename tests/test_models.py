"""Model shapes for every cell and direction, and evaluation at many lengths in one process."""

import keras
import numpy as np
import pytest

from kerasrnn.errors import UserError
from kerasrnn.modeling.layers import TimeDistributed
from kerasrnn.modeling.spec import RecurrentSpec
from kerasrnn.tasks import get_task

adder = get_task("adder")


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_adder_model_outputs_one_bit_per_step(cell, bidirectional):
    config = adder.make_config({"cell": cell, "units": 3, "layers": 2, "bidirectional": bidirectional})
    model = adder.build_model(config)
    for length in (2, 5, 11):
        out = model.predict(np.zeros((4, length, 2), "float32"), verbose=0)
        assert out.shape == (4, length, 1)
        assert np.all((out >= 0) & (out <= 1))
    recurrent = [layer for layer in model.layers if "bidirectional" in layer.name or layer.name.startswith(cell)]
    assert len(recurrent) == 2


def test_time_distributed_is_right_at_every_length_in_one_process():
    """Keras 3.15's TimeDistributed mapped over the batch size for an unknown time dimension."""
    inputs = keras.Input((None, 3))
    dense = keras.layers.Dense(2)
    model = keras.Model(inputs, TimeDistributed(dense)(inputs))
    rng = np.random.default_rng(0)
    for length in (2, 4, 7, 30, 3, 1):  # batch of 3: length 3 is where the old bug looked right
        x = rng.normal(size=(3, length, 3)).astype("float32")
        expected = x @ dense.kernel.numpy() + dense.bias.numpy()
        np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x)), expected, rtol=1e-5, atol=1e-5)


def test_time_distributed_survives_saving(tmp_path):
    inputs = keras.Input((None, 2))
    model = keras.Model(inputs, TimeDistributed(keras.layers.Dense(1))(inputs))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.layers[-1], TimeDistributed)
    x = np.ones((2, 9, 2), "float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


@pytest.mark.parametrize(
    "options,message",
    [
        ({"cell": "transformer"}, "unknown cell"),
        ({"units": 0}, "units"),
        ({"units": -3}, "units"),
        ({"layers": 0}, "layers"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 0}, "batch size"),
        ({"lr": 0.0}, "learning rate"),
        ({"loss": "hinge"}, "unknown loss"),
        ({"train_length": 0}, "train length"),
        ({"index": 2}, "applies to task recall, not"),
    ],
)
def test_bad_configurations_are_refused(options, message):
    with pytest.raises(UserError, match=message):
        adder.make_config(options)


def test_ce_is_an_alias_of_bce():
    assert adder.make_config({"loss": "CE"})["loss"] == "bce"
    assert RecurrentSpec.from_config(adder.make_config({})).cell == "lstm"


def test_predict_batches_matches_keras_predict_across_batch_boundaries():
    from kerasrnn.tasks.base import predict_batches

    model = get_task("recall").build_model(get_task("recall").make_config({"units": 4}))
    x = np.random.default_rng(0).random((23, 6, 10), dtype=np.float32)
    expected = model.predict(x, verbose=0)
    for batch_size in (5, 23, 100):  # uneven last slice, exactly one slice, one short slice
        got = predict_batches(model, x, batch_size=batch_size)
        assert got.shape == expected.shape and np.allclose(got, expected, atol=1e-6)
