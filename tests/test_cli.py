"""The command line as a user meets it: round trip, JSON output, and bad input."""

import json

import pytest


@pytest.fixture(scope="module")
def adder_run(tmp_path_factory):
    """A run fitted by the command line's entry point, in this process (test_bad_input_in_a_real_process and
    tests/test_kills.py start real ones)."""
    import contextlib
    import io

    from kerasrnn_cli.main import run

    run_dir = tmp_path_factory.mktemp("cli") / "adder-run"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), pytest.raises(SystemExit) as status:
        run(["fit", "adder", "--loss", "bce", "-o", "eval_samples=100", "-o", "train_length=10", "--seed", "2",
             "--out", str(run_dir), "--quiet"])  # fmt: skip
    assert status.value.code == 0
    assert "run saved in" in printed.getvalue()
    return run_dir


def test_round_trip_fit_evaluate_predict(adder_run, cli_here):
    evaluated = cli_here("evaluate", str(adder_run), "--lengths", "1-3,30", "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    document = json.loads(evaluated.stdout)  # stdout is one JSON document and nothing else
    assert document["task"] == "adder" and document["config"]["loss"] == "bce"
    assert set(document["by_length"]) == {"1", "2", "3", "30"}
    assert document["by_length"]["30"]["exact_accuracy"] > 0.9

    predicted = cli_here("predict", str(adder_run), "1011", "110", "--json")
    assert predicted.returncode == 0, predicted.stderr
    result = json.loads(predicted.stdout)
    assert result["a"] == "1011" and result["b"] == "110" and result["sum"] == "10001"

    text = cli_here("predict", str(adder_run), "111", "1")
    assert "1000" in text.stdout and "7 + 1 = 8" in text.stdout


def test_the_adder_leads_with_whole_sums_right_and_names_the_per_bit_accuracy(adder_run, cli_here):
    test = json.loads((adder_run / "metrics.json").read_text())["test"]
    assert test["accuracy"] == test["exact_accuracy"] and test["bit_accuracy"] >= test["exact_accuracy"]
    evaluated = cli_here("evaluate", str(adder_run), "--lengths", "3")
    assert evaluated.returncode == 0, evaluated.stderr
    headline = evaluated.stdout.splitlines()[0]
    assert headline.startswith(f"adder: test loss {test['loss']:.4g}, exact accuracy {test['exact_accuracy']:.4f} (whole sums")
    assert headline.endswith(f"bit accuracy {test['bit_accuracy']:.4f}")


BAD_INPUTS = [
    (["fit", "adder", "--cell", "transformer"], "cell"),
    (["fit", "adder", "--units", "0"], "units"),
    (["fit", "adder", "--units", "-2"], "units"),
    (["fit", "adder", "--epochs", "0"], "epochs"),
    (["fit", "adder", "--loss", "hinge"], "loss"),
    (["fit", "adder", "--backend", "theano"], "backend"),
    (["fit", "adder", "--dropout", "1.5"], "dropout"),
    (["fit", "adder", "--lr", "-1"], "learning rate"),
    (["fit", "adder", "--train-length", "0"], "train length"),
    (["fit", "adder", "--units", "ten"], "units"),
    (["fit", "chess"], "unknown task"),
    (["evaluate", "/nonexistent/run"], "no such run"),
    (["evaluate", "RUN", "--lengths", "9-3"], "A <= B"),
    (["evaluate", "RUN", "--lengths", "0-3"], ">= 1"),
    (["evaluate", "RUN", "--lengths", "abc"], "lengths"),
    (["predict", "RUN", "10201", "1"], "binary"),
    (["predict", "RUN", "", "1"], "empty"),
    (["predict", "RUN", "101"], "two binary numbers"),
    (["predict", "BROKEN_CONFIG", "101", "1"], "config.json is corrupt"),
    (["predict", "TRUNCATED_MODEL", "101", "1"], "model.keras is corrupt"),
    (["evaluate", "TRUNCATED_MODEL"], "model.keras is corrupt"),
    (["fit", "adder", "--out", "RUN"], "already holds a finished run"),
    (["fit", "adder", "--resume"], "--resume needs --out"),
    (["export", "RUN", "--format", "pb"], "unknown export format"),
    (["export", "/nonexistent/run", "--format", "tflite"], "no such run"),
    (["export", "RUN", "--format", "tflite", "--out", "model.bin"], "is a .tflite file"),
    (["predict", "/nonexistent/model.tflite", "1", "1"], "no such run"),
    (["sweep", "adder", "--units", "2,five"], "whole numbers"),
    (["sweep", "adder", "--directions", "sideways"], "uni and bi"),
    (["sweep", "recall", "--losses", "mse"], "applies to task adder, not"),
    (["fit", "adder", "-o", "epoch=2"], "has no option 'epoch': did you mean 'epochs'? `kerasrnn fit adder --dry-run` lists"),
    (["fit", "adder", "-o", "foo=1"], "task 'adder' has no option 'foo': `kerasrnn fit adder --dry-run` lists"),
    (["bench", "adder", "--backends", "tensorflow,theano"], "unknown backend"),
    (["bench", "adder", "-o", "units=0"], "units"),
    (["fit", "adder", "-o", "precision=bf16"], "precision must be auto, float32, bfloat16, got 'bf16'"),
]


@pytest.fixture(scope="module")
def damaged_runs(adder_run, tmp_path_factory):
    """Copies of the finished run with a broken config.json, and with a truncated model.keras."""
    import shutil

    folder = tmp_path_factory.mktemp("damaged")
    broken_config = shutil.copytree(adder_run, folder / "broken-config")
    (broken_config / "config.json").write_text('{"task": "adder", "units": ')
    truncated_model = shutil.copytree(adder_run, folder / "truncated-model")
    model = truncated_model / "model.keras"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    return {"RUN": adder_run, "BROKEN_CONFIG": broken_config, "TRUNCATED_MODEL": truncated_model}


@pytest.mark.parametrize("args,expected", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_gives_one_clear_line(args, expected, damaged_runs, capfd):
    """In this process (the entry point's own error handling), to spare a TensorFlow import per case."""
    from conftest import run_cli_here

    before = {path: path.read_bytes() for path in damaged_runs["RUN"].rglob("*") if path.is_file()}
    status, out, err = run_cli_here(capfd, *[str(damaged_runs.get(arg, arg)) for arg in args])
    assert status == 2, (status, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and expected in lines[0]
    assert "Traceback" not in err + out
    after = {path: path.read_bytes() for path in damaged_runs["RUN"].rglob("*") if path.is_file()}
    assert after == before  # bad input never touches a finished run


def test_bad_input_in_a_real_process(cli):
    done = cli("fit", "adder", "--units", "0")
    assert done.returncode == 2 and done.stderr.strip() == "error: units must be a whole number >= 1, got 0"


def test_every_command_has_help_readable_at_80_columns(cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    for command in ("fit", "evaluate", "predict", "export", "sweep", "bench", "data", "serve"):
        done = cli(command, "--help")
        assert done.returncode == 0 and "Usage" in done.stdout
        assert max(len(line) for line in done.stdout.splitlines()) <= 80 and "…" not in done.stdout, done.stdout
    fit_help = cli("fit", "--help").stdout
    assert "--recurrent-dropout <float>" in fit_help and "--bidirectional / --unidirectional" in fit_help
    assert "`kerasrnn fit TASK --dry-run` prints" in " ".join(fit_help.split())  # where the task's defaults are
    summary = cli("--help").stdout
    assert "..." not in summary.split("Commands:")[1] and "fit       Train a model on TASK into a run directory." in summary


def test_a_tasks_flags_live_in_its_module_and_the_command_line_offers_them(cli):
    from kerasrnn.tasks import declarations, get_task, task_names

    fit_help, predict_help = (" ".join(cli(command, "--help").stdout.split()) for command in ("fit", "predict"))
    for name in task_names():
        task, declared = get_task(name), declarations(name)
        assert declared["FLAGS"] == task.flags and declared["PREDICT_INPUTS"] == task.predict_inputs
        for key, (kind, text) in task.flags.items():
            flag = key.replace("_", "-")
            assert (f"--{flag} / --no-{flag}" if kind == "switch" else f"--{flag} <") in fit_help
            assert f"{name}: {text}" in fit_help
            assert key in task.defaults  # a flag sets one of the task's options
        assert f"{name}: {task.predict_inputs}" in predict_help
    done = cli("fit", "mnist", "--no-augment", "--limit", "64", "--data-path", "m.npz", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert {key: json.loads(done.stdout)[key] for key in ("augment", "limit", "data_path")} == {
        "augment": False, "limit": 64, "data_path": "m.npz"
    }  # fmt: skip


def test_serve_without_its_extra_says_so_before_announcing_anything(monkeypatch, capfd):
    import sys

    from conftest import run_cli_here

    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if `kerasrnn[serve]` were not installed
    status, out, err = run_cli_here(capfd, "serve", "saved_models/mnist-pretrained")
    assert status == 2 and err.strip() == "error: kerasrnn serve needs FastAPI and uvicorn: pip install 'kerasrnn[serve]'"
    assert "serving" not in out + err


def test_progress_written_to_a_file_is_one_line_per_epoch(tmp_path, cli_here):
    done = cli_here("fit", "adder", "-o", "epochs=2", "-o", "steps_per_epoch=30", "--out", str(tmp_path / "run"))
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stdout and "\x1b[" not in done.stdout  # no redraws, no colour codes in a log file
    epoch_lines = [line for line in done.stdout.splitlines() if line.startswith("30/30 - ")]
    assert len(epoch_lines) == 2 and "val_loss" in epoch_lines[-1]


def test_named_choices_are_accepted_in_any_case(capfd):
    from conftest import run_cli_here

    status, out, err = run_cli_here(
        capfd, "fit", "adder", "--cell", "LSTM", "--loss", "BCE", "-o", "lr_schedule=Cosine", "--dry-run"
    )
    assert status == 0, err
    config = json.loads(out)
    assert (config["cell"], config["loss"], config["lr_schedule"]) == ("lstm", "bce", "cosine")
