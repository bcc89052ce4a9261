"""`kerasrnn tune` (kerasrnn.studies.search): search a task's options with KerasTuner's oracles; every trial a complete fit run directory.

The search engine is KerasTuner's own: its oracles (random, Bayesian, Hyperband), its state files (so `--resume`
continues a search) and its distributed mode, a chief process running the oracle over gRPC and workers on
any machine asking it for trials (`--chief HOST:PORT`, `--worker HOST:PORT --worker-id NAME`; KerasTuner's
KERASTUNER_* variables are set from them). The toolkit adds the trial itself (`kerasrnn.fit` into
DIR/trials/trial_ID, so evaluate, predict, export and serve work on any trial), the search spaces (SPACES,
one place), the first trial on the toolkit's defaults (a search never reports worse than them), the
objective (the task's own figure, `objective`) and the results: DIR/tune.json, tune.md, tune.csv and DIR/best.

Keras-free when imported: KerasTuner imports Keras, so it is imported inside the functions, after the
backend is chosen.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from pathlib import Path

from kerasrnn import runs
from kerasrnn.errors import option, require
from kerasrnn.studies import tables
from kerasrnn.tasks import get_task

ALGORITHMS = ("random", "bayesian", "hyperband")
# Hyperband keeps the best third of a round for the next, three times the epochs (KerasTuner's default factor).
HYPERBAND_FACTOR = 3
PROJECT = "oracle"  # KerasTuner's state, in DIR/oracle/
TRIALS_DIR, BEST_LINK, RESULT_FILE = "trials", "best", "tune.json"

# The ranges each option is searched over: ("around", factor) a rate, log-uniform from the task's default
# divided by the factor to the default times it; ("choice", values...) anything else, the task's default added
# to the choices (the first trial uses the defaults).
SPACES = {
    "lr": ("around", 4.0),
    "batch_size": ("choice", 32, 64, 128, 256),
    "lr_schedule": ("choice", "constant", "cosine"),
    "clipnorm": ("choice", 0.5, 1.0, 5.0),
    "dropout": ("choice", 0.0, 0.1, 0.2),
    "epochs": ("choice", 20, 40, 80),
    "train_length": ("choice", 8, 16, 32),
    "loss": ("choice", "mse", "bce"),
    "readout_units": ("choice", 0, 16, 32),
    "curriculum_epochs": ("choice", 0, 10, 15),
    "candidates": ("choice", 1, 8, 32),
    "augment": ("choice", False, True),
}
# What a search varies unless --search says: the options measured to matter for each task.
DEFAULT_SEARCH = {
    "adder": ("lr", "batch_size", "train_length"),
    "recall": ("lr", "batch_size", "lr_schedule", "epochs", "readout_units", "curriculum_epochs", "candidates"),
    "mnist": ("lr", "dropout", "augment"),
}


def parse_search(task_name: str, text: str | None) -> list[str]:
    """`--search lr,batch_size` -> the options to vary (each one with a space, and one of the task's)."""
    if text is None:
        return list(DEFAULT_SEARCH.get(task_name, ("lr", "batch_size")))
    names = [name.strip().replace("-", "_") for name in text.split(",") if name.strip()]
    require(names, f"{option('search')} names no option: {text!r}")
    task = get_task(task_name)
    for name in names:
        require(name in SPACES, f"{option('search')}: no search space for {name!r}; searchable: {', '.join(SPACES)}")
        require(
            name in {**task.base_defaults(), **task.defaults}, f"{option('search')}: {name!r} is not an option of {task_name}"
        )
    return list(dict.fromkeys(names))


def parse_address(text: str, what: str) -> tuple[str, str]:
    host, _, port = text.rpartition(":")
    require(host and port.isdigit() and 0 < int(port) < 65536, f"{option(what)} takes HOST:PORT, got {text!r}")
    return host, port


def objective(task, metrics: dict) -> float:
    """What a search maximises: the task's own validation figure (`Task.objective` of metrics.json's
    `validation`: recall's lowest exact accuracy over its training lengths on fresh validation sequences, the
    adder's exact accuracy on its validation sums, mnist's validation accuracy). Never the test set."""
    return task.objective_value(metrics["validation"])


def describe_objective(task) -> str:
    return f"validation {(task.objective or 'accuracy (else loss)').replace('_', ' ')}"


def hyperparameters(task_name: str, searched: list[str], defaults: dict):
    """KerasTuner's HyperParameters for `searched`, each defaulting to the toolkit's default."""
    import keras_tuner

    space = keras_tuner.HyperParameters()
    for name in searched:
        kind, *values = SPACES[name]
        default = defaults[name]
        if kind == "around":
            space.Float(name, default / values[0], default * values[0], sampling="log", default=default)
        else:
            choices = list(dict.fromkeys([default, *values])) if default is not None else list(values)
            space.Choice(
                name, sorted(choices, key=repr) if len({type(c) for c in choices}) > 1 else sorted(choices), default=default
            )
    return space


def defaults_first(oracle_class):
    """`oracle_class` whose first trial is the hyperparameters' defaults (the toolkit's configuration).

    Every KerasTuner oracle draws a new trial's values with `_random_values` (Hyperband its first round's, which
    it then gives its epochs): the first draw of a search returns the defaults instead.
    """

    class DefaultsFirst(oracle_class):
        def _random_values(self):
            if not self.trials:
                return dict(self.get_space().values)
            return super()._random_values()

    DefaultsFirst.__name__ = f"DefaultsFirst{oracle_class.__name__}"
    return DefaultsFirst


def check_search(algorithm: str, searched: list[str], max_trials) -> None:
    """Refuse a search that cannot run, before KerasTuner (and with it a backend) is imported."""
    require(isinstance(max_trials, int) and max_trials >= 1, f"{option('max_trials')} must be a whole number >= 1")
    require(algorithm in ALGORITHMS, f"{option('algorithm')} is one of {', '.join(ALGORITHMS)}, got {algorithm!r}")
    require(
        not (algorithm == "hyperband" and "epochs" in searched),
        f"hyperband chooses each trial's epochs: leave epochs out of {option('search')}",
    )


def make_oracle(algorithm: str, space, max_trials: int, seed: int, max_epochs: int):
    """KerasTuner's oracle for `algorithm`; Hyperband's trials get from 1 to `max_epochs` epochs (the fit's)."""
    import keras_tuner

    classes = {"random": keras_tuner.oracles.RandomSearchOracle, "bayesian": keras_tuner.oracles.BayesianOptimizationOracle,
               "hyperband": keras_tuner.oracles.HyperbandOracle}  # fmt: skip
    score = keras_tuner.Objective("score", direction="max")
    if algorithm != "hyperband":
        return defaults_first(classes[algorithm])(objective=score, max_trials=max_trials, hyperparameters=space, seed=seed)
    oracle = defaults_first(classes[algorithm])(
        objective=score, max_epochs=max_epochs, factor=HYPERBAND_FACTOR, hyperband_iterations=1, hyperparameters=space, seed=seed
    )
    oracle.max_trials = max_trials  # Hyperband plans its own brackets; KerasTuner's cap on trials still applies
    return oracle


def trial_settings(values: dict) -> dict:
    """A trial's fit options from its hyperparameters: Hyperband's `tuner/epochs` becomes `epochs`; its other
    bookkeeping (bracket, round, the trial it continues) is not an option. Each trial trains from the start:
    the cosine rate's schedule spans the whole fit, so a longer trial is not a shorter one continued."""
    settings = {key: value for key, value in values.items() if not key.startswith("tuner/")}
    if "tuner/epochs" in values:
        settings["epochs"] = values["tuner/epochs"]
    return settings


def tuner_class():
    """KerasTuner's BaseTuner whose trial is `score_trial(trial) -> float`: a fit into a run directory."""
    import keras_tuner

    class RunTuner(keras_tuner.engine.base_tuner.BaseTuner):
        def __init__(self, oracle, out: Path, score_trial, overwrite: bool = False):
            self.score_trial = score_trial
            super().__init__(oracle, directory=str(out), project_name=PROJECT, overwrite=overwrite)

        def run_trial(self, trial, *args, **kwargs):
            return {"score": self.score_trial(trial)}

        def save_model(self, trial_id, model, step=0):
            pass  # every trial is a run directory already

    return RunTuner


def fit_trial(task_name: str, options: dict, out: Path, log, fit_run):
    """`score(trial)`: the trial's settings fitted by `fit_run` (kerasrnn.fit) into DIR/trials/trial_ID (a finished
    one reused, an unfinished one, taken over after its worker died, resumed), scored by `objective`."""
    import keras

    def score(trial) -> float:
        run_dir = trial_dir(out, trial.trial_id)
        chosen = trial_settings(trial.hyperparameters.values)
        log(f"kerasrnn tune: trial {trial.trial_id} {format_settings(chosen)} -> {run_dir}")
        keras.backend.clear_session()
        if runs.is_complete(run_dir):
            metrics = runs.read_metrics(run_dir)
        else:
            resume = run_dir.exists()
            settings = {**options, **chosen}  # a trial's own values over the options fixed for all
            metrics = fit_run(
                task_name, out=run_dir, resume=resume, verbose=0, log=lambda line: None, score_test=False, **settings
            ).metrics
        value = objective(get_task(task_name), metrics)
        log(f"kerasrnn tune: trial {trial.trial_id} scored {value:.4f}")
        return value

    return score


def run_grid(names: list[str], out: Path, fit_one, role: str, log) -> None:
    """`fit_one(name)` for every name through KerasTuner's grid oracle (`kerasrnn sweep`): alone, in order; with a
    chief, each name once on the worker that asks next. Each sweep starts a new grid (its finished runs are reused)."""
    import keras_tuner

    space = keras_tuner.HyperParameters()
    space.Choice("run", names)
    oracle = keras_tuner.oracles.GridSearchOracle(
        objective=keras_tuner.Objective("score", direction="max"), max_trials=len(names), hyperparameters=space
    )
    if role != "worker":
        shutil.rmtree(out / PROJECT, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)

    def fit_or_stop(trial) -> float:
        try:
            return fit_one(trial.hyperparameters.values["run"])
        except Exception as error:  # a sweep stops at a failed fit, as one fit would: KerasTuner only logs failed trials
            raise keras_tuner.errors.FatalError(str(error)) from error

    with contextlib.redirect_stdout(sys.stderr):  # KerasTuner prints its progress: stdout is for the table
        tuner = tuner_class()(oracle, out, fit_or_stop)
        if role != "alone":
            log(f"kerasrnn sweep: {len(names)} configurations ({role})")
        try:
            tuner.search(verbose=0)
        except keras_tuner.errors.FatalError as stop:
            raise (stop.__cause__ or stop) from None  # the fit's own error: one line, its exit status


def format_cell(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def format_settings(values: dict) -> str:
    return " ".join(f"{key}={format_cell(value)}" for key, value in values.items())


def trial_dir(out: Path, trial_id: str) -> Path:
    return Path(out) / TRIALS_DIR / f"trial_{trial_id}"


def check_distribution(chief: str | None, worker: str | None, worker_id: str | None) -> tuple[str | None, str | None]:
    """Refuse a chief or worker that cannot run, before a backend is imported; (host, port) or (None, None)."""
    require(not (chief and worker), f"a process is {option('chief')} or {option('worker')}, not both")
    if worker:
        require(worker_id, f"{option('worker')} needs {option('worker_id')}: a name of its own, e.g. worker-1")
        require(worker_id != "chief" and "chief" not in worker_id, f"{option('worker_id')} may not contain 'chief'")
    return parse_address(chief or worker, "chief" if chief else "worker") if (chief or worker) else (None, None)


def configure_distribution(chief: str | None, worker: str | None, worker_id: str | None) -> str:
    """Set KerasTuner's KERASTUNER_* variables; the role: 'alone', 'chief' or 'worker'."""
    host, port = check_distribution(chief, worker, worker_id)
    for name in ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT"):
        os.environ.pop(name, None)
    if host is None:
        return "alone"
    os.environ.update(KERASTUNER_ORACLE_IP=host, KERASTUNER_ORACLE_PORT=port,
                      KERASTUNER_TUNER_ID="chief" if chief else worker_id)  # fmt: skip
    return "chief" if chief else "worker"


def tune(task_name: str, options: dict, out: Path, searched: list[str], max_trials: int, algorithm: str = "random",
         resume: bool = False, chief: str | None = None, worker: str | None = None, worker_id: str | None = None,
         log=print, verbose: int = 1, *, fit_run) -> dict | None:  # fmt: skip
    """Run (or join) a search whose trials `fit_run` fits (kerasrnn.fit: the API hands it in, so that this module
    needs nothing of the API); the chief and a process alone write DIR/tune.json and DIR/best and return its
    document, a worker returns None."""
    check_search(algorithm, searched, max_trials)
    out = Path(out)
    role = configure_distribution(chief, worker, worker_id)
    state = out / PROJECT
    if role != "worker":
        require(
            resume or not state.exists(),
            f"{out} holds a search: pass {option('resume', 'True')} to continue it, or give another {option('out')}",
        )
        require(not resume or state.exists(), f"nothing to resume in {out}: it holds no search")
    task = get_task(task_name)
    defaults = task.make_config(options)
    space = hyperparameters(task_name, searched, defaults)
    oracle = make_oracle(algorithm, space, max_trials, defaults["seed"], defaults["epochs"])
    out.mkdir(parents=True, exist_ok=True)
    with contextlib.redirect_stdout(sys.stderr):  # KerasTuner prints its progress: stdout is for the results
        tuner = tuner_class()(oracle, out, fit_trial(task_name, options, out, log, fit_run))
        log(f"kerasrnn tune: {task_name}, {algorithm} search of {', '.join(searched)}, {max_trials} trials ({role})")
        try:
            tuner.search(verbose=verbose)
        except KeyboardInterrupt:
            log("kerasrnn tune: stopped; the finished trials are kept (continue with --resume)")
            if role == "worker":
                raise
    if role == "worker":
        return None
    return write_results(out, tuner.oracle, task_name, searched)


def write_results(out: Path, oracle, task_name: str, searched: list[str]) -> dict:
    """tune.json ({"trials": [...], "best": {...}} in trial order), tune.md, tune.csv and the `best` link."""
    trials = []
    for trial_id in sorted(oracle.trials):
        trial = oracle.trials[trial_id]
        run_dir = trial_dir(out, trial_id)
        trials.append({"id": trial_id, "settings": trial_settings(trial.hyperparameters.values), "metric": trial.score,
                       "status": str(trial.status), "run": str(run_dir)})  # fmt: skip
    scored = [trial for trial in trials if trial["metric"] is not None]
    best = max(scored, key=lambda trial: trial["metric"]) if scored else None
    if best is not None:  # the search is over: the chosen trial's test set is read now, once, for the report
        from kerasrnn.training.fitting import score_test_set

        best = {**best, "test": score_test_set(Path(best["run"]))["test"]}
    document = {"task": task_name, "searched": searched, "objective": describe_objective(get_task(task_name)),
                "chosen_on": "validation", "trials": trials, "best": best}  # fmt: skip
    runs.write_json_atomic(out / RESULT_FILE, document)
    varied = [
        *searched,
        *(["epochs"] if any("epochs" in trial["settings"] for trial in trials) and "epochs" not in searched else []),
    ]
    columns = ["id", *varied, "metric", "status"]
    rows = [{"id": trial["id"], **trial["settings"], "metric": trial["metric"], "status": trial["status"]} for trial in trials]
    runs.write_text_atomic(out / "tune.md", tables.markdown(rows, columns, format_cell=format_cell) + "\n")
    tables.write_csv(out / "tune.csv", rows, columns)
    if best is not None:
        link_best(out, Path(best["run"]))
    return document


def link_best(out: Path, run_dir: Path) -> None:
    """DIR/best: a link to the best trial's run directory (a copy where links cannot be made)."""
    best = out / BEST_LINK
    if best.is_symlink() or best.is_file():
        best.unlink()
    elif best.is_dir():
        shutil.rmtree(best)
    try:
        best.symlink_to(Path(TRIALS_DIR) / run_dir.name, target_is_directory=True)
    except OSError:
        shutil.copytree(run_dir, best)
