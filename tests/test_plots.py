"""The figures a student pastes into a report: titles that say what they show, whole epochs, plain numbers.

Each figure is read back from the plotting function's axes (the save is intercepted before the figure closes).
"""

import csv

import pytest

from kerasrnn import runs
from kerasrnn.insight import plots


@pytest.fixture
def drawn(monkeypatch):
    """The figures the plotting functions save, drawn and kept open to be read."""
    figures = []

    def keep(figure, path):
        figure.canvas.draw()
        figures.append(figure)
        return path

    monkeypatch.setattr(plots, "save_to", keep)
    return figures


def write_csv(path, rows):
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


ADDER = {"task": "adder", "cell": "lstm", "units": 10, "layers": 1, "bidirectional": False, "loss": "mse"}


def tick_labels(axis, which="x"):
    ticks = axis.get_xticklabels() if which == "x" else axis.get_yticklabels(minor=False) + axis.get_yticklabels(minor=True)
    return [label.get_text() for label in ticks if label.get_text()]


def test_one_epoch_is_one_whole_tick_and_titles_name_task_model_and_loss(tmp_path, drawn):
    write_csv(tmp_path / runs.HISTORY_FILE, [{"epoch": 0, "loss": 0.2, "val_loss": 0.25, "exact_accuracy": 0.5}])
    plots.epoch_curves(tmp_path, ["loss", "exact_accuracy"], ADDER)
    [figure] = drawn
    assert figure._suptitle.get_text() == "adder: LSTM 10, MSE loss"
    loss_axis, accuracy_axis = figure.axes
    assert loss_axis.get_title() == "MSE loss" and accuracy_axis.get_title() == "exact accuracy"
    assert tick_labels(loss_axis) == ["1"]


def test_sweep_losses_of_other_scales_get_their_own_panel_and_whole_epochs(tmp_path, drawn):
    histories = {
        "lstm-u2-mse": {"val_loss": [0.2, 0.1]},
        "lstm-u2-bce": {"val_loss": [0.7, 0.5]},
        "gru-u2-bce": {"val_loss": [0.6, 0.4]},
    }
    configs = {name: {**ADDER, "loss": name.rsplit("-", 1)[1]} for name in histories}
    plots.sweep_curves(tmp_path / "val_loss.png", histories, configs)
    [figure] = drawn
    mse, bce = figure.axes
    assert mse.get_title() == "adder: MSE loss, validation, per epoch" and len(mse.get_lines()) == 1
    assert bce.get_title() == "adder: binary cross-entropy loss, validation, per epoch" and len(bce.get_lines()) == 2
    for axis in figure.axes:
        assert all(label.lstrip("−-").isdigit() for label in tick_labels(axis)), tick_labels(axis)


def test_log_scaled_losses_are_labelled_with_plain_numbers(tmp_path, drawn):
    write_csv(tmp_path / runs.ITERATIONS_FILE, [{"iteration": i, "loss": 1.5 + i / 100} for i in range(150)])
    plots.iteration_loss(tmp_path, {**ADDER, "loss": "bce"})
    [figure] = drawn
    [axis] = figure.axes
    assert axis.get_yscale() == "log"
    labels = tick_labels(axis, "y")
    assert labels and not any("10^" in label or "times" in label or "×" in label for label in labels), labels
    assert axis.get_title() == "adder: LSTM 10, binary cross-entropy loss: training loss per iteration"
