"""bench and sweep on tiny configurations: well-formed tables and JSON, missing backends reported, sweeps resumed."""

import csv
import json

import pytest

from kerasrnn.errors import UserError
from kerasrnn.studies import bench, sweep

TINY_ADDER = {"epochs": 2, "steps_per_epoch": 3, "eval_samples": 20, "validation_samples": 50, "test_samples": 50}


def test_sweep_writes_one_row_per_configuration_and_reuses_finished_runs(tmp_path, monkeypatch):
    grid = {"units": [2, 3], "train_length": [4]}
    logged = []
    document = sweep.sweep("adder", grid, TINY_ADDER, tmp_path, lengths=[1, 2, 3, 4], log=logged.append)

    names = [row["run"] for row in document["rows"]]
    assert names == ["lstm-u2-l1-uni-mse-L4", "lstm-u3-l1-uni-mse-L4"]
    for row in document["rows"]:
        assert row["epochs"] == 2 and 0.0 <= row["test_accuracy"] <= row["test_bit_accuracy"] <= 1.0
        test = json.loads((tmp_path / row["run"] / "metrics.json").read_text())["test"]
        assert row["test_accuracy"] == test["exact_accuracy"]  # whole sums: the number a student quotes
        assert row["longest_length"] == 4 and row["lengths_all_exact"].endswith("/4")
    with (tmp_path / "sweep.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["run"] for row in rows] == names and rows[0]["units"] == "2"
    assert len((tmp_path / "sweep.md").read_text().splitlines()) == 2 + 2
    assert json.loads((tmp_path / "sweep.json").read_text())["rows"] == json.loads(json.dumps(document["rows"]))
    for figure in ("val_loss.png", "accuracy_by_length.png"):
        assert (tmp_path / figure).read_bytes().startswith(b"\x89PNG")

    # A second sweep over the same folder trains nothing; a run without metrics.json is resumed.
    (tmp_path / names[-1] / "metrics.json").unlink()
    from kerasrnn.training import fitting

    fitted = []
    real_fit = fitting.fit
    monkeypatch.setattr(
        fitting,
        "fit",
        lambda config, run_dir, resume=False, **kw: (
            fitted.append((run_dir.name, resume)) or real_fit(config, run_dir, resume=resume, **kw)
        ),
    )
    logged.clear()
    again = sweep.sweep("adder", grid, TINY_ADDER, tmp_path, lengths=[1, 2, 3, 4], log=logged.append)
    assert fitted == [(names[-1], True)]
    assert sum("reused" in line for line in logged) == 1
    assert [row["run"] for row in again["rows"]] == names

    # A sweep with other options never reuses (nor resumes) these runs: one line, nothing trained.
    table = (tmp_path / "sweep.md").read_text()
    fitted.clear()
    with pytest.raises(UserError, match=r"lstm-u2-l1-uni-mse-L4 holds a run fitted with other options \(epochs=2 there, 3 now"):
        sweep.sweep("adder", grid, {**TINY_ADDER, "epochs": 3}, tmp_path, log=logged.append)
    (tmp_path / names[-1] / "metrics.json").unlink()
    with pytest.raises(UserError, match="seed=0 there, 1 now"):
        sweep.sweep("adder", grid, {**TINY_ADDER, "seed": 1}, tmp_path, log=logged.append)
    assert fitted == [] and (tmp_path / "sweep.md").read_text() == table


def test_sweep_grid_is_the_product_of_its_lists():
    configurations = sweep.expand("adder", {"cell": ["rnn", "gru"], "units": [2, 5, 10], "loss": ["mse", "ce", "bce"]}, {})
    assert len(configurations) == 2 * 3 * 2  # ce is bce: one run, not two
    assert configurations[0][0] == "rnn-u2-l1-uni-mse" and configurations[0][1]["cell"] == "rnn"


def test_sweep_refuses_bad_grids_before_training(tmp_path):
    with pytest.raises(UserError, match="unknown cell"):
        sweep.sweep("adder", {"cell": ["lstm", "transformer"]}, TINY_ADDER, tmp_path)
    with pytest.raises(UserError, match="'loss' applies to task adder, not 'recall'"):
        sweep.sweep("recall", {"loss": ["mse"]}, {}, tmp_path)
    with pytest.raises(UserError, match="no sequence lengths"):
        sweep.sweep("mnist", {"units": [8]}, {"limit": 64}, tmp_path, lengths=[1, 2])
    with pytest.raises(UserError, match="whole numbers"):
        sweep.parse_list("2,five", int)
    with pytest.raises(UserError, match="uni and bi"):
        sweep.parse_directions("uni,both")
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_bench_table_json_and_a_missing_backend(tmp_path, monkeypatch):
    from kerasrnn import backend

    installed = backend.backend_installed
    monkeypatch.setattr(bench, "backend_installed", lambda name: name != "jax" and installed(name))
    document = bench.bench(
        "adder", ["tensorflow", "jax"], TINY_ADDER, tmp_path, reference=True, log=lambda *_: None, devices=[1, 2]
    )

    tensorflow, tensorflow_on_two, jax, _, plain_loop, notebook_loop = document["results"]
    assert tensorflow["status"] == "ok", tensorflow["status"]
    assert tensorflow["train_samples_per_second"] > 0 and tensorflow["predict_samples_per_second"] > 0
    assert tensorflow["first_epoch_seconds"] > 0 and tensorflow["peak_memory_mb"] > 100  # TensorFlow alone is more
    assert 0.0 <= tensorflow["test"]["accuracy"] <= 1.0
    assert jax["status"] == 'not installed: pip install "kerasrnn[jax]"'
    assert "mnist only" in plain_loop["status"] and "mnist only" in notebook_loop["status"]
    assert (plain_loop["backend"], notebook_loop["backend"]) == ("plain PyTorch loop", "notebook PyTorch loop")
    assert json.loads((tmp_path / "bench.json").read_text())["results"][2]["backend"] == "jax"
    table = (tmp_path / "bench.md").read_text().splitlines()
    assert (
        len(table) >= 2 + 6 and table[2].startswith("| tensorflow | 1 | ok |") and table[3].startswith("| tensorflow | 2 | ok |")
    )
    # The scaling table: samples/s per device count against one device, and what logical devices mean.
    assert tensorflow_on_two["status"] == "ok" and tensorflow_on_two["logical_cpu_devices"]
    assert [(row["backend"], row["devices"]) for row in document["scaling"]] == [("tensorflow", 1), ("tensorflow", 2)]
    two = document["scaling"][1]
    assert two["speedup"] == pytest.approx(tensorflow_on_two["train_samples_per_second"] / tensorflow["train_samples_per_second"])
    assert two["per_device"] == pytest.approx(tensorflow_on_two["train_samples_per_second"] / 2)
    assert "sharing this machine's same cores" in "\n".join(table)
    assert (tmp_path / "bench.png").read_bytes().startswith(b"\x89PNG")
    assert document["fastest"].startswith("fastest backend for adder here: tensorflow")
    flags = "".join(f" -o {k}={v}" for k, v in TINY_ADDER.items()) + "`"
    assert document["fastest"].endswith(flags) and "`kerasrnn fit adder --backend tensorflow" in document["fastest"]


def test_bench_names_the_fastest_backend_that_ran():
    rows = [
        {"backend": "tensorflow", "status": "ok", "train_samples_per_second": 1700.0},
        {"backend": "torch", "status": "ok", "train_samples_per_second": 2300.0},
        {"backend": "jax", "status": "failed: out of memory"},
        {"backend": "plain PyTorch loop", "status": "ok", "train_samples_per_second": 2100.0},  # not a backend
    ]
    line = bench.fastest_backend("mnist", rows, {"epochs": 2})
    assert (
        line
        == "fastest backend for mnist here: torch (2,300 samples/s); use it with `kerasrnn fit mnist --backend torch -o epochs=2`"
    )
    rows.append({"backend": "jax", "devices": 2, "status": "ok", "train_samples_per_second": 2400.0})
    assert bench.fastest_backend("mnist", rows, {}) == (
        "fastest backend for mnist here: jax on 2 devices (2,400 samples/s); use it with `kerasrnn fit mnist --backend jax --devices 2`"
    )
    assert bench.fastest_backend("mnist", rows[2:3], {}) is None


def test_bench_refuses_unknown_backends_and_options(tmp_path):
    with pytest.raises(UserError, match="unknown backend 'theano'"):
        bench.parse_backends("tensorflow,theano")
    with pytest.raises(UserError, match="'index' applies to task recall, not 'adder'"):
        bench.bench("adder", ["tensorflow"], {"index": 3}, tmp_path, log=lambda *_: None)


def test_bench_repeats_take_turns_and_report_each_rows_median_range_and_ratio(tmp_path, monkeypatch):
    speeds = {"tensorflow": [100.0, 300.0, 200.0], "torch": [900.0, 800.0, 700.0], "plain": [400.0, 500.0, 450.0],
              "notebook": [300.0, 310.0, 320.0]}  # fmt: skip
    order = []

    def fake_row(name, backend):
        order.append(name)
        return {"backend": backend, "devices": 1, "status": "ok", "train_samples_per_second": speeds[name].pop(0)}

    monkeypatch.setattr(bench, "bench_backend", lambda task, backend, options, out, devices: fake_row(backend, backend))
    names = {"plain": "plain PyTorch loop", "notebook": "notebook PyTorch loop"}
    monkeypatch.setattr(bench, "bench_reference", lambda task, options, out, loop: fake_row(loop, names[loop]))
    monkeypatch.setattr(bench, "write_tables", lambda document, out: None)
    document = bench.bench(
        "mnist", ["tensorflow", "torch"], {"epochs": 1}, tmp_path, reference=True, log=lambda *_: None, repeat=3
    )

    assert order == ["tensorflow", "torch", "plain", "notebook", "torch", "plain", "notebook", "tensorflow",
                     "plain", "notebook", "tensorflow", "torch"]  # fmt: skip
    tensorflow, torch, plain, notebook = document["results"]
    assert tensorflow["train_samples_per_second"] == 200.0 and tensorflow["train_samples_per_second_range"] == "100-300"
    assert torch["train_samples_per_second"] == 800.0 and torch["vs_plain_loop"] == "1.78x"  # 800 / 450
    assert plain["vs_plain_loop"] == "1.00x" and notebook["runs"] == 3
    table = bench.markdown_table(document["results"])
    assert "| range over runs | vs plain PyTorch loop |" in table and "| 700-900 | 1.78x |" in table
    with pytest.raises(UserError, match="repeat must be a whole number >= 1"):
        bench.bench("mnist", ["torch"], {}, tmp_path, repeat=0)


def test_a_failed_fit_stops_the_sweep_with_its_own_error(tmp_path, monkeypatch):
    from kerasrnn.errors import RunError
    from kerasrnn.training import fitting

    def diverging(config, run_dir, **kwargs):
        raise RunError(f"training stopped: the loss became non-finite ({run_dir.name})")

    monkeypatch.setattr(fitting, "fit", diverging)
    with pytest.raises(RunError, match=r"non-finite \(lstm-u2-l1-uni-mse\)"):
        sweep.sweep("adder", {"units": [2, 3]}, TINY_ADDER, tmp_path, log=lambda line: None)
    assert not (tmp_path / "sweep.md").exists()


def test_a_run_killed_before_it_saved_anything_is_fitted_afresh(tmp_path):
    """A fit killed while writing its first file leaves only a temporary file: the sweep starts that run."""
    run_dir = tmp_path / "lstm-u2-l1-uni-mse"
    run_dir.mkdir()
    (run_dir / ".tmp-999-config.json").write_text("{")
    logged = []
    document = sweep.sweep("adder", {"units": [2]}, TINY_ADDER, tmp_path, log=logged.append)
    assert [row["run"] for row in document["rows"]] == ["lstm-u2-l1-uni-mse"] and "fitting" in logged[-1]
    assert not list(run_dir.glob(".tmp-*"))
