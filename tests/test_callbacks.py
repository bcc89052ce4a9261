"""The per-iteration loss log recovers each batch's loss from Keras' running means."""

from kerasrnn.training.fitting import IterationLossLogger, steady_samples_per_second


def running_means(losses):
    return [sum(losses[: k + 1]) / (k + 1) for k in range(len(losses))]


def rows(path):
    return [line.split(",") for line in path.read_text().splitlines()[1:]]


def test_every_batch_loss_is_recovered(tmp_path):
    logger = IterationLossLogger(tmp_path / "iterations.csv")
    losses = [2.0, 1.0, 0.5, 0.25]
    logger.on_epoch_begin(0)
    for batch, mean in enumerate(running_means(losses)):
        logger.on_train_batch_end(batch, {"loss": mean})
    logger.on_epoch_end(0)
    assert [float(loss) for _, _, loss in rows(tmp_path / "iterations.csv")] == losses


def test_one_report_per_execution_logs_the_mean_of_its_batches(tmp_path):
    """steps_per_execution=2: Keras reports after batches 1 and 3 (zero-based)."""
    logger = IterationLossLogger(tmp_path / "iterations.csv")
    losses = [2.0, 1.0, 0.5, 0.25]
    means = running_means(losses)
    logger.on_epoch_begin(0)
    logger.on_train_batch_end(1, {"loss": means[1]})
    logger.on_train_batch_end(3, {"loss": means[3]})
    logger.on_epoch_end(0)
    assert rows(tmp_path / "iterations.csv") == [["2", "0", "1.5"], ["4", "0", "0.375"]]


def test_a_resumed_log_continues_its_iteration_count(tmp_path):
    path = tmp_path / "iterations.csv"
    first = IterationLossLogger(path)
    first.on_epoch_begin(0)
    first.on_train_batch_end(0, {"loss": 1.0})
    first.on_train_batch_end(1, {"loss": 1.0})
    first.on_epoch_end(0)
    second = IterationLossLogger(path)  # a new process after --resume
    second.on_epoch_begin(1)
    second.on_train_batch_end(0, {"loss": 3.0})
    second.on_epoch_end(1)
    assert [row[0] for row in rows(path)] == ["1", "2", "3"]


def test_steady_throughput_leaves_out_the_first_epoch():
    assert steady_samples_per_second([10.0, 2.0, 2.0], 100) == 50.0
    assert steady_samples_per_second([4.0], 100) == 25.0


class Stoppable:
    stop_training = False


def epochs_until_stopped(losses, fraction=0.01, patience=3):
    """The epoch at which RelativeEarlyStopping stops a fit with these validation losses (None: it runs on)."""
    from kerasrnn.training.callbacks import RelativeEarlyStopping

    stopping, model = RelativeEarlyStopping(fraction, patience=patience), Stoppable()
    stopping.set_model(model)
    stopping.on_train_begin()
    for epoch, loss in enumerate(losses):
        stopping.on_epoch_end(epoch, {"val_loss": loss})
        if model.stop_training:
            return epoch
    return None


def test_a_loss_creeping_down_by_less_than_the_fraction_stops_the_fit():
    """A better value counts only below the best by 1% of the first epoch's: the scale is the fit's own."""
    creeping = [1.0, 0.5, 0.1] + [0.02 * 0.99**epoch for epoch in range(30)]  # 1% better each epoch, 0.0002 a step
    assert epochs_until_stopped(creeping, fraction=0.0) is None  # Keras' EarlyStopping runs on
    assert epochs_until_stopped(creeping) == 6  # the last step counted: to 0.02 (epoch 3), then 3 epochs' patience
    falling = [0.5 * 0.9**epoch for epoch in range(20)]  # 10% better each epoch, from whatever scale
    assert epochs_until_stopped(falling) is None and epochs_until_stopped([value * 1e-4 for value in falling]) is None
    assert epochs_until_stopped([1.0, 0.5, 0.6, 0.7, 0.8]) == 4  # worse for three epochs
