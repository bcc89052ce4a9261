"""The Python API: what the command line does, as functions and a `Run` object for notebooks and scripts.

    import kerasrnn
    run = kerasrnn.fit("adder", loss="mse")        # trains, writes a run directory, returns a Run
    run.evaluate(lengths="1-64")                   # the dict `kerasrnn evaluate --json` prints
    run.predict(["1011", "110"])                   # the dict `kerasrnn predict --json` prints
    run.export("tflite", out="adder.tflite")       # the artifact's path
    kerasrnn.load("adder.tflite").predict(["1011", "110"])

The command line is a thin layer over these functions. Keras is imported on the first call that needs
it, with the backend asked for there (else $KERAS_BACKEND, else TensorFlow); it cannot change
afterwards in the same process (restart the kernel to use another).
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from kerasrnn import runs
from kerasrnn.backend import choose_backend, select_backend
from kerasrnn.config import choose_task, read_config_file, split_selection
from kerasrnn.errors import UserError, option
from kerasrnn.training import distribution


def start(task=None, config: str | Path | None = None, backend: str | None = None) -> tuple:
    """(the task, backend, the config file's options): the task given (a name, PACKAGE.MODULE:NAME or a Task
    object) or the file's, found again where it came from; the backend given, else the file's, else
    $KERAS_BACKEND, chosen for this process (not imported yet: options are checked first)."""
    from kerasrnn.tasks import get_task, task_of

    file_selection, file_options = split_selection(read_config_file(config)) if config else ({}, {})
    chosen = choose_task(task, file_selection.get("task"))
    found = task_of(file_selection) if chosen == file_selection.get("task") else get_task(chosen)
    return found, choose_backend(backend or file_selection.get("backend")), file_options


def resolve_config(task: str | None = None, config: str | Path | None = None, backend: str | None = None,
                   log=None, **options) -> dict:  # fmt: skip
    """The complete configuration `fit` would train: the task's defaults and recipes, the config file,
    then `options`; `log` hears which recipes applied."""
    found, chosen_backend, file_options = start(task, config, backend)
    resolved = found.make_config({**file_options, **options}, log=log)
    resolved["backend"] = chosen_backend
    return resolved


def fit(task=None, *, config: str | Path | None = None, out: str | Path | None = None,
        backend: str | None = None, resume: bool = False, overwrite: bool = False,
        lengths: str | list[int] | None = None, verbose: int | str = "auto", log=print, devices: int | str = 1,
        coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None,
        score_test: bool = True, **options) -> Run | None:  # fmt: skip
    """Train `task` (a name, a PACKAGE.MODULE:NAME reference, or a Task object; else the task of the `config`
    file) and return the finished Run.

    `options` are the task's options (units=5, loss="bce", clipnorm=None, ...), over the config file's,
    over the defaults. `out`: the run directory (default saved_models/TASK-CELL-UNITS-TIME);
    `resume=True` continues an interrupted fit there (or starts it, given the task, if nothing was saved yet). `lengths`: where a sequence task is evaluated.
    `devices`: data-parallel devices (a number or "all"; the batch size stays the global batch);
    `coordinator` ("HOST:PORT"), `num_processes`, `process_id`: one process of a multi-process JAX fit,
    where only process 0 writes the run and gets a Run back (the others get None). docs/distributed.md.
    `score_test=False`: the test set is not read (metrics.json's `test` is null; its `validation` holds what a
    search chooses by) until `Run.score_test()`.
    `x=`, `y=` (and `x_validation`, `y_validation`, `x_test`, `y_test`): the sequences task's data as arrays,
    kept as NPZ files in an `arrays` folder beside the run (docs/sequences.md).
    """
    if resume and out is None:
        raise UserError(f"{option('resume', 'True')} needs {option('out')}: the run directory to continue")
    if resume and task is None and config is None and (Path(out) / runs.CONFIG_FILE).is_file():
        config = Path(out) / runs.CONFIG_FILE  # `kerasrnn fit --resume --out DIR` needs no task: the run names it
    if resume and (task is not None or config is not None) and not runs.resumable(Path(out)):
        log(f"kerasrnn: nothing saved in {out} yet (a fit stopped before it began): starting it")
        resume = False  # so that the same command, with --resume, is right after a kill at any moment
    devices = distribution.parse_devices(devices)
    cluster = distribution.parse_cluster(coordinator, num_processes, process_id)
    if any(name in options for name in ("x", "y", "x_validation", "y_validation", "x_test", "y_test")):
        from kerasrnn.sequences.readers import arrays_as_files

        options = arrays_as_files(options, (Path(out).parent if out is not None else runs.DEFAULT_ROOT) / "arrays")
    resolved = resolve_config(task, config, backend, log=log, **options)
    asked = distribution.device_count(devices, cluster)
    if asked:  # refused before any device starts; "all" is checked once the devices are known
        distribution.require_divisible(resolved["batch_size"], asked)
    select_backend(resolved["backend"])
    distribution.start_devices(resolved["backend"], devices, cluster)  # before the backend computes anything
    from kerasrnn.training import fitting  # after the backend is chosen: it imports Keras

    run_dir = Path(out) if out is not None else runs.default_run_dir(resolved)
    metrics = fitting.fit(resolved, run_dir, resume=resume, overwrite=overwrite, verbose=verbose, log=log,
                           lengths=as_lengths(lengths), devices=devices, score_test=score_test)  # fmt: skip
    return Run(run_dir, resolved["backend"]) if metrics is not None else None


def tune(task: str, *, out: str | Path | None = None, search: str | list[str] | None = None, max_trials: int = 10,
         algorithm: str = "random", resume: bool = False, backend: str | None = None, chief: str | None = None,
         worker: str | None = None, worker_id: str | None = None, log=print, verbose: int = 1,
         **options) -> dict | None:  # fmt: skip
    """Search `task`'s options with KerasTuner (kerasrnn.tune): the first trial is the toolkit's defaults, each
    trial a run under OUT/trials/. Returns tune.json's document (a worker of a distributed search: None).
    `search`: the options to vary, a list or "lr,batch_size" (default: the task's set); `options`: fixed for
    every trial. `chief` ("HOST:PORT") runs the oracle for workers; `worker` and `worker_id` run trials for it."""
    from kerasrnn.studies import search as tuning

    found, chosen_backend, _ = start(task, None, backend)
    task_name = found.name
    searched = tuning.parse_search(task_name, ",".join(search) if isinstance(search, list | tuple) else search)
    tuning.check_search(algorithm, searched, max_trials)
    tuning.check_distribution(chief, worker, worker_id)
    select_backend(chosen_backend)  # KerasTuner imports TensorFlow: quietly, once the search is known to run
    out = Path(out) if out is not None else runs.DEFAULT_ROOT / f"tune-{task_name}"
    return tuning.tune(task_name, options, out, searched, max_trials, algorithm, resume, chief, worker, worker_id,
                       log=log, verbose=verbose, fit_run=fit)  # fmt: skip


def load(path: str | Path, backend: str | None = None) -> Run:
    """A run directory, or an exported artifact (SavedModel directory, .tflite, .onnx or .keras file), as a Run.

    The backend is chosen here and imported by the first call that needs Keras, after the path and the
    inputs were checked."""
    backend = choose_backend(backend)
    return Run(path, backend)


def as_lengths(lengths: str | list[int] | None) -> list[int] | None:
    """'1-64' or '1-20,100' or [1, 2, 3] -> a sorted list of lengths (None: the task's default)."""
    from kerasrnn.tasks.base import parse_lengths

    if lengths is None or isinstance(lengths, str):
        return parse_lengths(lengths)
    return parse_lengths(",".join(str(length) for length in lengths))


class Run:
    """A trained run directory or an exported artifact: its config, results, figures and model."""

    def __init__(self, path: str | Path, backend: str | None = None):
        from kerasrnn.export import artifacts

        self.path = Path(path)
        self.backend = backend  # None: $KERAS_BACKEND, else TensorFlow
        self.is_artifact = artifacts.artifact_format(self.path) not in (None, "run")
        self.config = artifacts.read_metadata(self.path)["config"] if self.is_artifact else runs.read_config(self.path)
        self._predictor = None  # (task, config, model or artifact), loaded by the first predict

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, task={self.task!r})"

    @property
    def task(self) -> str:
        return self.config["task"]

    @property
    def metrics(self) -> dict:
        """metrics.json of a run; an artifact's export record (task, config, parity)."""
        from kerasrnn.export import artifacts

        return artifacts.read_metadata(self.path) if self.is_artifact else runs.read_metrics(self.path)

    @property
    def history(self) -> dict[str, list[float]]:
        """Per-epoch metrics from history.csv, as Keras' History.history: {"loss": [...], ...}."""
        self._require_run("history")
        return runs.read_history(self.path)

    @property
    def figures(self) -> list[Path]:
        """The run's figures (plots/*.png)."""
        return runs.figures(self.path) if not self.is_artifact else []

    def evaluate(self, lengths: str | list[int] | None = None, data: str | Path | None = None) -> dict:
        """Test metrics and, for sequence tasks, accuracy at each of `lengths`; `data`: a file of labelled
        sequences to score instead of the test set (task sequences): what `evaluate --json` prints."""
        self._require_run("evaluate")
        if data is not None:
            from kerasrnn.tasks import task_of

            task_of(self.config).check_data(self.config, data)  # a missing or unreadable file, before Keras loads
        select_backend(self.backend)
        from kerasrnn.training import fitting

        return fitting.evaluate_run(self.path, as_lengths(lengths), data=data)

    def predict(self, inputs: list[str] | str, show: str | Path | None = None) -> dict:
        """The model's answer for a person's inputs (as `kerasrnn predict` takes them): what `predict --json` prints."""
        from kerasrnn.serving import prediction
        from kerasrnn.tasks import task_of

        inputs = [inputs] if isinstance(inputs, (str, Path)) else [str(item) for item in inputs]
        if self._predictor is None:
            prediction.check_request(task_of(self.config), self.config, inputs, show, before_loading=True)
            select_backend(self.backend)
            self._predictor = prediction.load_predictor(self.path)
        return prediction.predict_with(*self._predictor, inputs, show=str(show) if show else None)

    def inspect(self, inputs: list[str] | str | None = None, length: int | None = None, out: str | Path | None = None,
                log=None) -> dict:  # fmt: skip
        """Look inside the network: hidden states, gates and answers at every step for `inputs` (as `predict`
        takes them; None: a generated or test example, `length` steps long for the sequence tasks), and probes of
        what the state holds. Figures go to `out` (default RUN/inspect/; for a run shipped with the toolkit or
        read-only, saved_models/RUN-inspect/, which `log` hears): what `kerasrnn inspect --json` prints."""
        from kerasrnn.export import artifacts
        from kerasrnn.tasks import task_of

        fmt = artifacts.artifact_format(self.path)
        if fmt not in ("run", "keras"):
            raise UserError(
                f"{self.path} is a {fmt} artifact, which runs the model but cannot show its hidden states: "
                "inspect the run directory (or .keras file) it was exported from"
            )
        if isinstance(inputs, (str, Path)):
            inputs = [inputs]
        select_backend(self.backend)
        from kerasrnn.insight import inspection  # it imports Keras: after the backend is chosen

        model = artifacts.load_artifact(self.path) if fmt == "keras" else runs.load_model(self.path)
        out_dir = Path(out) if out is not None else self.default_inspection_dir()
        if out is None and not self.is_artifact and out_dir != self.path / "inspect":
            (log or print)(f"kerasrnn: {self.path} is shipped with the toolkit or read-only: the figures go to {out_dir}")
        return inspection.inspect_model(task_of(self.config), self.config, model, out_dir, [str(i) for i in inputs or []], length)

    def default_inspection_dir(self) -> Path:
        return runs.output_dir(self.path, "inspect") if not self.is_artifact else self.path.with_name(f"{self.path.stem}-inspect")

    def describe_prediction(self, result: dict) -> str:
        """A prediction (from `predict`) as one readable line per input."""
        from kerasrnn.tasks import task_of

        text = task_of(self.config).describe_prediction(result)
        return f"{text}\nfigure saved in {result['figure']}" if result.get("figure") else text

    def export(self, format: str = "savedmodel", out: str | Path | None = None, log=None, window: int | None = None) -> Path:
        """Write the model as keras, savedmodel, tflite or onnx (checked against Keras) and return the artifact's path.

        Exports are TensorFlow's: in a process already running Keras on another backend this says so.
        """
        self._require_run("export")
        select_backend("tensorflow")
        from kerasrnn.export import writers

        metadata = writers.export_run(self.path, format, Path(out) if out else None, log=log or (lambda line: None),
                                      window=window)  # fmt: skip
        return Path(metadata["artifact_path"])

    def score_test(self, lengths: str | list[int] | None = None) -> dict:
        """Read the test set of a run fitted with `score_test=False` (once): metrics.json, complete."""
        self._require_run("score the test set of")
        select_backend(self.backend)
        from kerasrnn.training import fitting

        return fitting.score_test_set(self.path, as_lengths(lengths))

    def show(self):
        """Display the figures inline (Jupyter); elsewhere, return their paths."""
        try:
            from IPython.display import Image, display
        except ImportError:
            return self.figures
        for figure in self.figures:
            display(Image(filename=str(figure)))
        return None

    def _repr_html_(self) -> str:
        """How a notebook shows a Run: what it is, its test result and its figures."""
        lines = [f"<b>{html.escape(self.task)}</b> run <code>{html.escape(str(self.path))}</code>"]
        if not self.is_artifact and runs.is_complete(self.path):
            test = self.metrics["test"]
            lines.append(html.escape(runs.describe_test(test)))
        for figure in self.figures:
            encoded = base64.b64encode(figure.read_bytes()).decode("ascii")
            lines.append(f'<img alt="{html.escape(figure.name)}" src="data:image/png;base64,{encoded}" style="max-width:48%">')
        return "<br>".join(lines)

    def _require_run(self, what: str) -> None:
        if self.is_artifact:
            raise UserError(f"{what} needs a run directory; {self.path} is an exported artifact (it can predict)")
