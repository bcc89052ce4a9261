"""The figures a person looks at after a fit, as PNG files under RUN_DIR/plots."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only: no screen on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402

from kerasrnn.runs import atomic_path, plots_dir, read_history, read_iterations  # noqa: E402

CELL_TITLES = {"rnn": "SimpleRNN", "lstm": "LSTM", "gru": "GRU"}
LOSS_TITLES = {"mse": "MSE loss", "bce": "binary cross-entropy loss"}  # validated configs say bce, never ce


def run_title(config: dict) -> str:
    """What a figure shows, for a reader of a report: task, model and loss, e.g. 'adder: LSTM 10, MSE loss'."""
    model = f"{'bidirectional ' if config['bidirectional'] else ''}{CELL_TITLES[config['cell']]} {config['units']}"
    if config["layers"] > 1:
        model += f" x {config['layers']} layers"
    return f"{config['task']}: {model}, {loss_title(config)}"


def loss_title(config: dict) -> str:
    return LOSS_TITLES.get(config.get("loss"), "cross-entropy loss")


def whole_epochs(axis, epochs: list[int]) -> None:
    """Epochs are whole numbers: integer ticks only, and one epoch centred rather than spread over 0.96-1.04."""
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(set(epochs)) == 1:
        axis.set_xlim(epochs[0] - 1, epochs[0] + 1)
        axis.set_xticks([epochs[0]])


def plain_numbers(axis) -> None:
    """Tick labels as plain numbers (0.2, 2), not 2x10^-1, on linear and log axes alike."""

    def minor(value, _):  # within one decade the minor ticks are the only labels; over more they would crowd
        low, high = axis.get_ylim()
        return f"{value:g}" if axis.get_yscale() == "log" and low > 0 and high / low < 10 else ""

    axis.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.yaxis.set_minor_formatter(FuncFormatter(minor))


def save(figure, run_dir: Path, name: str) -> Path:
    return save_to(figure, plots_dir(run_dir) / name)


def save_to(figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return path


def iteration_loss(run_dir: Path, config: dict) -> Path:
    """Training loss of every iteration (batch), with a moving average to read the trend."""
    columns = read_iterations(run_dir)
    losses = columns.get("loss", [])
    figure, axis = plt.subplots(figsize=(7, 4))
    axis.plot(range(1, len(losses) + 1), losses, lw=0.6, alpha=0.5, label="loss per iteration")
    window = max(1, len(losses) // 50)
    if len(losses) > window > 1:
        kernel = [1.0 / window] * window
        import numpy as np

        smooth = np.convolve(losses, kernel, mode="valid")
        axis.plot(range(window, len(losses) + 1), smooth, lw=1.5, label=f"moving average ({window})")
    axis.set_xlabel("iteration (batch)")
    axis.set_ylabel(f"training {loss_title(config)}")
    axis.set_yscale("log" if losses and min(losses) > 0 else "linear")
    plain_numbers(axis)
    axis.set_title(f"{run_title(config)}: training loss per iteration")
    axis.grid(alpha=0.3)
    axis.legend()
    return save(figure, run_dir, "loss_per_iteration.png")


def epoch_curves(run_dir: Path, metrics: list[str], config: dict) -> Path:
    """One panel per metric: training and validation value per epoch."""
    columns = read_history(run_dir)
    epochs = [int(e) + 1 for e in columns.get("epoch", [])]
    figure, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.8), squeeze=False)
    for axis, metric in zip(axes[0], metrics):
        for prefix, label in (("", "training"), ("val_", "validation")):
            values = columns.get(prefix + metric)
            if values:
                axis.plot(epochs, values, marker="o", ms=3, label=label)
        axis.set_xlabel("epoch")
        axis.set_title(loss_title(config) if metric == "loss" else metric.replace("_", " "))
        whole_epochs(axis, epochs)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(run_title(config))
    figure.tight_layout()
    return save(figure, run_dir, "epoch_curves.png")


def accuracy_by_length(
    run_dir: Path,
    by_length: dict,
    metrics: list[str],
    train_lengths: tuple[int, int],
    config: dict,
    name: str = "accuracy_by_length.png",
) -> Path:
    """Accuracy against sequence length, the training length(s) marked."""
    lengths = sorted(int(n) for n in by_length)
    figure, axis = plt.subplots(figsize=(7, 4))
    for metric in metrics:
        axis.plot(lengths, [by_length[str(n)][metric] for n in lengths], marker="o", ms=3, label=metric.replace("_", " "))
    low, high = train_lengths
    if low == high:
        axis.axvline(low, color="gray", ls="--", label=f"training length {low}")
    else:
        axis.axvspan(low - 0.5, high + 0.5, color="gray", alpha=0.15, label=f"training lengths {low}-{high}")
    axis.set_xlabel("sequence length")
    axis.set_ylabel("accuracy")
    axis.set_ylim(-0.02, 1.02)
    axis.set_title(f"{run_title(config)}: accuracy against length")
    axis.grid(alpha=0.3)
    axis.legend()
    return save(figure, run_dir, name)


def confusion_matrix(run_dir: Path, matrix, name: str = "confusion_matrix.png") -> Path:
    """Counts of true (rows) against predicted (columns) classes, the diagonal being right answers."""
    import numpy as np

    matrix = np.asarray(matrix)
    figure, axis = plt.subplots(figsize=(6.5, 5.5))
    shown = axis.imshow(np.log1p(matrix), cmap="Blues")
    for row in range(matrix.shape[0]):
        for col in range(matrix.shape[1]):
            colour = "white" if np.log1p(matrix[row, col]) > np.log1p(matrix.max()) / 2 else "black"
            axis.text(col, row, str(matrix[row, col]), ha="center", va="center", fontsize=8, color=colour)
    axis.set_xticks(range(matrix.shape[1]))
    axis.set_yticks(range(matrix.shape[0]))
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    accuracy = np.trace(matrix) / max(matrix.sum(), 1)
    axis.set_title(f"Confusion matrix (test accuracy {accuracy:.2%})")
    figure.colorbar(shown, ax=axis, label="log(1 + count)")
    return save(figure, run_dir, name)


def sample_grid(run_dir: Path, images, labels, predicted, seed: int = 0, count: int = 36, name: str = "test_samples.png") -> Path:
    """Random test images titled true/predicted; mistakes in red. Mistakes are included on purpose."""
    import numpy as np

    rng = np.random.default_rng(seed)
    wrong = np.flatnonzero(labels != predicted)
    right = np.flatnonzero(labels == predicted)
    chosen_wrong = rng.choice(wrong, size=min(len(wrong), count // 6), replace=False) if len(wrong) else []
    chosen = np.concatenate([chosen_wrong, rng.choice(right, size=count - len(chosen_wrong), replace=False)]).astype(int)
    rng.shuffle(chosen)
    side = int(np.ceil(np.sqrt(count)))
    figure, axes = plt.subplots(side, side, figsize=(1.6 * side, 1.8 * side))
    for axis in axes.ravel():
        axis.axis("off")
    for axis, index in zip(axes.ravel(), chosen):
        mistake = labels[index] != predicted[index]
        axis.imshow(images[index], cmap="gray")
        axis.set_title(f"true {labels[index]} / pred {predicted[index]}", fontsize=8, color="red" if mistake else "black")
        if mistake:
            for spine in axis.spines.values():
                spine.set_visible(True)
                spine.set_color("red")
    figure.suptitle(f"Random test images ({len(chosen_wrong)} mistakes shown in red)")
    figure.tight_layout()
    return save(figure, run_dir, name)


def preprocessed_digits(path, steps_per_input: list[dict], predictions) -> Path:
    """Each input image through every preprocessing step to the 28x28 the model read, and the prediction."""
    count, columns = len(steps_per_input), len(steps_per_input[0])
    figure, axes = plt.subplots(count, columns, figsize=(1.9 * columns, 2.1 * count), squeeze=False)
    for row, steps, prediction in zip(axes, steps_per_input, predictions):
        for axis, (name, image) in zip(row, steps.items()):
            axis.imshow(image, cmap="gray", vmin=0, vmax=1)
            axis.set_title(name, fontsize=8)
            axis.axis("off")
        row[0].set_title(Path(prediction["input"]).name, fontsize=8)
        row[-1].set_title(f"-> {prediction['label']} ({prediction['confidence']:.0%})", fontsize=9)
    figure.tight_layout()
    return save_to(figure, path)


def bench_bars(path: Path, document: dict) -> Path:
    """Training and prediction samples/s per backend, side by side."""
    rows = [row for row in document["results"] if row.get("status") == "ok"]
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for axis, key, title in zip(axes, ("train_samples_per_second", "predict_samples_per_second"), ("training", "prediction")):
        names = [row["backend"] + (f" x{row['devices']}" if row.get("devices", 1) != 1 else "") for row in rows]
        values = [row.get(key) or 0 for row in rows]
        bars = axis.barh(names, values, color="tab:blue")
        axis.bar_label(bars, labels=[f"{value:,.0f}" for value in values], padding=3)
        axis.set_xlabel("samples / s")
        axis.set_title(f"{document['task']}: {title} (higher is better)")
        axis.margins(x=0.25)
    return save_to(figure, path)


def sweep_curves(path: Path, histories: dict[str, dict], configs: dict[str, dict], metric: str = "val_loss") -> Path:
    """One line per configuration: `metric` per epoch, overlaid; losses of different scales (MSE, cross-entropy)
    each in their own panel."""
    panels: dict[str, list[str]] = {}
    for name in histories:
        panels.setdefault(loss_title(configs[name]), []).append(name)
    figure, axes = plt.subplots(1, len(panels), figsize=(8 * len(panels), 4.5), squeeze=False)
    task = next(iter(configs.values()))["task"]
    for axis, (loss, names) in zip(axes[0], panels.items()):
        epochs = []
        for name in names:
            values = histories[name].get(metric, [])
            epochs += range(1, len(values) + 1)
            axis.plot(range(1, len(values) + 1), values, marker=".", label=name)
        axis.set_xlabel("epoch")
        axis.set_ylabel(f"{metric.replace('val_', 'validation ').replace('_', ' ')} ({loss})")
        if metric.endswith("loss") and all(min(histories[name].get(metric) or [1]) > 0 for name in names):
            axis.set_yscale("log")
        plain_numbers(axis)
        whole_epochs(axis, epochs or [1])
        axis.legend(fontsize=7, ncol=2)
        axis.set_title(f"{task}: {loss}, validation, per epoch")
    figure.tight_layout()
    return save_to(figure, path)


def sweep_accuracy_by_length(path: Path, by_length: dict[str, dict], metric: str = "exact_accuracy") -> Path:
    """One line per configuration: accuracy against sequence length."""
    figure, axis = plt.subplots(figsize=(8, 4.5))
    for name, scores in by_length.items():
        lengths = sorted(scores, key=int)
        axis.plot([int(n) for n in lengths], [scores[n][metric] for n in lengths], marker=".", ms=3, label=name)
    axis.set_xlabel("sequence length")
    axis.set_ylabel(metric.replace("_", " "))
    axis.set_ylim(-0.02, 1.02)
    axis.legend(fontsize=7, ncol=2)
    axis.set_title(f"{metric.replace('_', ' ')} against length, every configuration")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    return save_to(figure, path)


# ---- inside a network (kerasrnn.insight.inspection) -------------------------------------------------------
def step_axis(axis, labels: list[str]) -> None:
    """Steps along x, labelled with what each step reads (thinned out for long sequences)."""
    every = max(1, len(labels) // 32)
    axis.set_xticks(range(0, len(labels), every))
    axis.set_xticklabels(labels[::every], fontsize=7, rotation=90 if max(map(len, labels)) > 2 else 0)
    axis.set_xlabel("step (what it reads)")


def steps_wide(labels: list[str]) -> float:
    """A figure's width for a step axis: room for every step's label, never narrower than 6 inches."""
    return max(6, 0.18 * len(labels) + 2)


def heatmap(axis, values, labels: list[str], title: str, vmin=None, vmax=None):
    """(steps, units) values as units down, steps across."""
    image = axis.imshow(values.T, aspect="auto", cmap="RdBu_r", vmin=vmin, vmax=vmax, interpolation="nearest")
    axis.set_title(title, fontsize=9)
    axis.set_ylabel("unit")
    axis.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=6))
    step_axis(axis, labels)
    return image


def hidden_states(path: Path, traces, labels: list[str], title: str) -> Path:
    """Every unit's hidden state at every step, one panel per layer and direction."""
    figure, axes = plt.subplots(len(traces), 1, figsize=(steps_wide(labels), 2.2 + 1.6 * len(traces)), squeeze=False)
    for axis, trace in zip(axes[:, 0], traces):
        image = heatmap(axis, trace.hidden[0], labels, f"{trace.name}: hidden state", vmin=-1, vmax=1)
        figure.colorbar(image, ax=axis, fraction=0.03)
    figure.suptitle(f"hidden state while reading {Path(title).name}", fontsize=10)
    figure.tight_layout()
    return save_to(figure, path)


def gates(path: Path, traces, labels: list[str], title: str) -> Path:
    """Each gate (0: closed, 1: open) and an LSTM's cell state, one panel each, per layer and direction."""
    panels = [(trace.name, name, values[0]) for trace in traces for name, values in trace.gates.items()]
    figure, axes = plt.subplots(len(panels), 1, figsize=(steps_wide(labels), 1.2 + 1.9 * len(panels)), squeeze=False)
    for axis, (layer, name, values) in zip(axes[:, 0], panels):
        limit = float(np.abs(values).max()) or 1.0
        low, high = (-limit, limit) if name == "cell state" else (0, 1)
        image = heatmap(axis, values, labels, f"{layer}: {name}", vmin=low, vmax=high)
        figure.colorbar(image, ax=axis, fraction=0.03)
    figure.suptitle(f"gates (0 closed, 1 open) while reading {Path(title).name}", fontsize=10)
    figure.tight_layout()
    return save_to(figure, path)


def answers_by_step(path: Path, answers, labels: list[str], title: str, task: str) -> Path:
    """The answer had the sequence ended at each step: one output per step (adder) or a probability per class."""
    figure, axis = plt.subplots(figsize=(steps_wide(labels), 3.2))
    if answers.shape[-1] == 1:
        axis.plot(range(len(labels)), answers[:, 0], marker="o", markersize=3)
        axis.axhline(0.5, color="grey", linewidth=0.8, linestyle="--")
        axis.set_ylim(-0.05, 1.05)
        axis.set_ylabel("output bit (probability of 1)")
        step_axis(axis, labels)
    else:
        image = axis.imshow(answers.T, aspect="auto", cmap="Greens", vmin=0, vmax=1, interpolation="nearest")
        axis.set_ylabel("answer")
        axis.set_yticks(range(answers.shape[-1]))
        step_axis(axis, labels)
        figure.colorbar(image, ax=axis, fraction=0.03, label="probability")
    axis.set_title(f"{task}: the answer had the input ended at each step, reading {Path(title).name}", fontsize=9)
    figure.tight_layout()
    return save_to(figure, path)


def probes_by_step(out_dir: Path, probes: dict, task: str) -> Path:
    """Each probe's accuracy at every step, with what always answering the commonest value gets."""
    figure, axis = plt.subplots(figsize=(7, 3.4))
    for name, probe in probes.items():
        steps = range(1, len(probe["by_step"]) + 1)
        axis.plot(steps, probe["by_step"], marker="o", markersize=3, label=f"{name} probe")
        axis.plot(steps, probe["chance_by_step"], color="grey", linestyle="--", linewidth=0.9, label=f"{name}: commonest value")
    axis.set_ylim(0, 1.02)
    axis.set_xlabel("step")
    axis.set_ylabel("accuracy on held-out sequences")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.legend(fontsize=8, loc="lower right")
    axis.set_title(f"{task}: what a linear read-out finds in the state at each step", fontsize=9)
    figure.tight_layout()
    return save_to(figure, out_dir / "probes.png")


def rows_that_matter(out_dir: Path, images, rows: list[dict], labels: list[str]) -> Path:
    """Each image beside how much its answer's probability drops when one row is blanked."""
    count = len(images)
    figure, axes = plt.subplots(count, 2, figsize=(6, 2.8 * count), squeeze=False, gridspec_kw={"width_ratios": [1, 1]})
    for (image_axis, bar_axis), image, found, label in zip(axes, images, rows, labels):
        image_axis.imshow(image, cmap="gray", vmin=0, vmax=1)
        drops = np.clip(np.asarray(found["drop_by_row"]), 0, None)
        image_axis.imshow(
            np.repeat(drops[:, None], image.shape[1], axis=1), cmap="Reds", alpha=0.45, vmin=0, vmax=max(drops.max(), 1e-6)
        )
        image_axis.set_title(f"{Path(label).name} -> {found['label']} ({found['confidence']:.0%})", fontsize=8)
        image_axis.axis("off")
        bar_axis.barh(range(1, len(drops) + 1), found["drop_by_row"], color="firebrick")
        bar_axis.invert_yaxis()
        bar_axis.set_ylabel("row blanked")
        bar_axis.set_xlabel("drop in the answer's probability")
    figure.suptitle("mnist: which rows the answer rests on", fontsize=10)
    figure.tight_layout()
    return save_to(figure, out_dir / "rows.png")
