"""Configurations: null options, tuned defaults (recipes), config files, and the docs' result tables."""

import json
import re
import shlex
from pathlib import Path

import pytest
from conftest import run_cli_here

ROOT = Path(__file__).resolve().parents[1]


def dry_run(capfd, *args: str) -> dict:
    """The configuration `kerasrnn fit ARGS` would train, through the command line's own parsing."""
    status, out, err = run_cli_here(capfd, "fit", *args, "--dry-run")
    assert status == 0, err
    return json.loads(out)


def test_null_means_none_where_allowed(capfd):
    assert dry_run(capfd, "mnist", "-o", "clipnorm=null")["clipnorm"] is None
    assert dry_run(capfd, "mnist")["clipnorm"] == 1.0
    assert dry_run(capfd, "adder", "-o", "validation_length=null")["validation_length"] is None


def test_null_is_refused_where_an_option_needs_a_value(capfd):
    status, _, err = run_cli_here(capfd, "fit", "adder", "-o", "units=null", "--dry-run")
    assert status == 2 and err.strip() == "error: option units cannot be null: give a value (or leave it out for the default)"


def test_recipes_apply_by_cell_and_size_and_yield_to_given_options(capfd):
    lstm = dry_run(capfd, "mnist", "--cell", "lstm")
    assert (lstm["lr"], lstm["augment"], lstm["dropout"]) == (3e-3, False, 0.1)
    assert dry_run(capfd, "mnist", "--cell", "lstm", "--bidirectional")["dropout"] == 0.0
    assert dry_run(capfd, "mnist", "--cell", "lstm", "--dropout", "0")["dropout"] == 0.0
    gru = dry_run(capfd, "mnist", "--cell", "gru")
    assert (gru["lr"], gru["augment"]) == (3e-3, True)
    rnn = dry_run(capfd, "mnist", "--cell", "rnn")
    assert (rnn["lr"], rnn["augment"]) == (1e-3, False)
    assert dry_run(capfd, "mnist", "--cell", "gru", "--lr", "0.001", "--no-augment")["lr"] == 0.001
    small = dry_run(capfd, "recall", "--cell", "lstm", "--units", "2")
    assert (small["candidates"], small["curriculum_epochs"], small["readout_units"], small["epochs"]) == (32, 15, 32, 30)
    assert dry_run(capfd, "recall", "--cell", "lstm", "--units", "2", "--epochs", "12")["epochs"] == 12
    assert dry_run(capfd, "recall", "--cell", "gru", "--units", "5")["candidates"] == 1
    small_gru = dry_run(capfd, "recall", "--cell", "gru", "--units", "2")
    assert {key: small_gru[key] for key in ("candidates", "readout_units", "batch_size", "lr", "lr_schedule", "epochs")} == {
        "candidates": 32, "readout_units": 32, "batch_size": 128, "lr": 3e-2, "lr_schedule": "constant", "epochs": 80
    }  # fmt: skip
    assert dry_run(capfd, "recall", "--cell", "gru", "--units", "2", "--layers", "2")["candidates"] == 1


def test_recipes_say_so_in_the_log(capfd):
    status, _, err = run_cli_here(capfd, "fit", "recall", "--units", "2", "--dry-run")
    assert status == 0 and "recall defaults for lstm 2: small-state recipe (readout_units=32" in err


def test_adder_evaluates_past_its_training_length_by_default():
    from kerasrnn.tasks import get_task

    adder = get_task("adder")
    assert adder.default_lengths(adder.make_config({})) == list(range(1, 65))
    assert adder.default_lengths(adder.make_config({"train_length": 5})) == list(range(1, 11))


def test_config_files_toml_and_json_with_the_command_line_on_top(tmp_path, capfd):
    toml = tmp_path / "small.toml"
    toml.write_text('task = "recall"\ncell = "gru"\nunits = 5\nclipnorm = "null"\nmax-length = 12\n')
    config = dry_run(capfd, "--config", str(toml), "--units", "7")
    assert (config["task"], config["cell"], config["units"], config["clipnorm"], config["max_length"]) == (
        "recall",
        "gru",
        7,
        None,
        12,
    )
    as_json = tmp_path / "small.json"
    as_json.write_text(json.dumps(config))
    assert dry_run(capfd, "--config", str(as_json)) == config  # a resolved config reproduces itself


@pytest.mark.parametrize(
    "content,args,expected",
    [
        ('task = "recall"\nunits = ', [], "not valid TOML"),
        ('task = "recall"\n', ["adder"], "differs from the config file's"),
        ("units = 3\n", [], "name a task"),
        ('task = "adder"\nwarp = 9\n', [], "has no option 'warp'"),
    ],
)
def test_bad_config_files_get_one_line(tmp_path, capfd, content, args, expected):
    path = tmp_path / "bad.toml"
    path.write_text(content)
    status, _, err = run_cli_here(capfd, "fit", *args, "--config", str(path), "--dry-run")
    assert status == 2 and len(err.strip().splitlines()) == 1 and expected in err, err


def test_a_missing_config_file(capfd):
    status, _, err = run_cli_here(capfd, "fit", "--config", "/nonexistent/config.toml", "--dry-run")
    assert status == 2 and "no such config file" in err


# ---- every result command in README and docs trains what its table says ----------------------------------------
def result_table_rows() -> list[tuple[str, str, str]]:
    """(file, command, settings) of every table row holding a `kerasrnn fit` command, in README.md and docs/."""
    rows = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        header = None
        for line in path.read_text().splitlines():
            if not line.startswith("|"):
                header = None
                continue
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if header is None:
                header = [cell.lower() for cell in cells]
                continue
            row = dict(zip(header, cells))
            command = re.search(r"`(kerasrnn fit [^`]+)`", row.get("command", ""))
            if command:
                rows.append((path.name, command.group(1), row.get("settings", "")))
    return rows


def expected_settings(text: str) -> dict:
    """`key=value` code spans in a settings cell -> {key: value}, values read as JSON where they can be."""
    settings = {}
    for key, value in re.findall(r"`([a-z_]+)=([^`]+)`", text):
        try:
            settings[key] = json.loads(value)
        except json.JSONDecodeError:
            settings[key] = value
    return settings


RESULT_ROWS = result_table_rows()


def test_the_docs_have_result_tables_with_settings():
    assert len(RESULT_ROWS) >= 20
    assert sum(bool(expected_settings(settings)) for _, _, settings in RESULT_ROWS) >= 15


@pytest.mark.parametrize("source,command,settings", RESULT_ROWS, ids=[f"{s}: {c}" for s, c, _ in RESULT_ROWS])
def test_each_result_command_trains_what_its_table_says(source, command, settings, capfd):
    args = shlex.split(command)[2:]
    config = dry_run(capfd, *args)
    for key, value in expected_settings(settings).items():
        assert config[key] == value, f"{source}: {command} trains {key}={config[key]!r}, the table says {value!r}"
