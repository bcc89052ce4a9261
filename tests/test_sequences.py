"""Task sequences: every file format reads to the same arrays, every bad input is one line (exit 2, no run left),
a fit on small mixed-length sequences learns a rule that needs memory, and its artifacts answer as the run does."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from kerasrnn.errors import UserError
from kerasrnn.sequences import readers
from kerasrnn.sequences.readers import read_sequences
from kerasrnn.sequences.tsfile import read_ts

VOWELS = Path(__file__).resolve().parents[2] / "shared" / "data" / "japanese-vowels"


def peak_sequences(seed: int, count: int, channels: int = 3):
    """Mixed lengths (6-20 steps); the label: which channel peaked first (a rule that needs memory)."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for _ in range(count):
        steps = int(rng.integers(6, 21))
        x = rng.normal(0.0, 0.2, (steps, channels)).astype(np.float32)
        order = rng.permutation(channels)
        at = np.sort(rng.choice(steps, size=channels, replace=False))
        x[at, order] += 3.0
        xs.append(np.round(x, 4))
        ys.append(f"c{order[0]}")
    return xs, ys


def write_long(path: Path, xs, ys, sep=","):
    lines = [sep.join(["seq", "t", *(f"f{c}" for c in range(xs[0].shape[1])), "label"])]
    for index in reversed(range(len(xs))):  # rows out of order: --order sorts them
        for step in reversed(range(len(xs[index]))):
            lines.append(sep.join([f"s{index}", str(step), *(f"{v:.4f}" for v in xs[index][step]), ys[index]]))
    path.write_text("\n".join(lines) + "\n")


def write_ts(path: Path, xs, ys):
    classes = " ".join(sorted(set(ys)))
    lines = ["# made by the tests", "@problemname Peaks", "@univariate false", f"@dimensions {xs[0].shape[1]}",
             "@equallength false", f"@classlabel true {classes}", "@data"]  # fmt: skip
    for x, y in zip(xs, ys):
        lines.append(":".join(",".join(f"{v:.4f}" for v in x[:, c]) for c in range(x.shape[1])) + f":{y}")
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("formats")
    xs, ys = peak_sequences(0, 40)
    write_long(folder / "long.csv", xs, ys)
    write_long(folder / "long.tsv", xs, ys, sep="\t")
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    pq.write_table(pacsv.read_csv(folder / "long.csv"), folder / "long.parquet")
    longest = max(len(x) for x in xs)
    padded = np.zeros((len(xs), longest, 3), np.float32)
    for index, x in enumerate(xs):
        padded[index, : len(x)] = x
    np.savez(folder / "padded.npz", x=padded, lengths=np.array([len(x) for x in xs]), y=np.array(ys))
    listed = np.empty(len(xs), dtype=object)
    listed[:] = xs
    np.savez(folder / "listed.npz", x=listed, y=np.array(ys))
    write_ts(folder / "peaks.ts", xs, ys)
    return folder, xs, ys


LONG = {"id": "seq", "order": "t", "label": "label"}


def test_every_format_reads_to_the_same_arrays(files):
    folder, xs, ys = files
    reads = {
        "long.csv": read_sequences(folder / "long.csv", **LONG),
        "long.tsv": read_sequences(folder / "long.tsv", **LONG),
        "long.parquet": read_sequences(folder / "long.parquet", **LONG),
        "padded.npz": read_sequences(folder / "padded.npz"),
        "listed.npz": read_sequences(folder / "listed.npz"),
        "peaks.ts": read_sequences(folder / "peaks.ts"),
    }
    for name, recorded in reads.items():
        # long files list sequences in order of first appearance (written last to first)
        order = list(reversed(range(len(xs)))) if name.startswith("long") else list(range(len(xs)))
        assert len(recorded.x) == len(xs), name
        for position, index in enumerate(order):
            np.testing.assert_allclose(recorded.x[position], xs[index], atol=1e-4, err_msg=name)
            assert str(recorded.y[position]) == ys[index], name
    assert reads["long.csv"].features == ["f0", "f1", "f2"] and reads["long.csv"].ids[0] == f"s{len(xs) - 1}"


def test_wide_files_hold_one_univariate_series_a_row(tmp_path):
    (tmp_path / "wide.csv").write_text("class,v0,v1,v2,v3\na,1,2,3,4\nb,5,6,,\na,7,8,9,\n")
    recorded = read_sequences(tmp_path / "wide.csv")
    assert [x[:, 0].tolist() for x in recorded.x] == [[1, 2, 3, 4], [5, 6], [7, 8, 9]]
    assert list(recorded.y) == ["a", "b", "a"] and recorded.features == ["value"]


@pytest.mark.skipif(not VOWELS.exists(), reason="no ../shared/data/japanese-vowels")
def test_the_archives_ts_file_reads_as_its_csv_conversion():
    """The UEA archive's .ts file of Japanese Vowels against the long CSV converted from it (values unchanged)."""
    from_ts = read_sequences(VOWELS / "JapaneseVowels_TRAIN.ts")
    from_csv = read_sequences(VOWELS / "train.csv", id="utterance", order="frame", label="speaker")
    assert len(from_ts.x) == len(from_csv.x) == 270
    assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(from_ts.x, from_csv.x))
    assert [str(y) for y in from_ts.y] == [str(int(y)) for y in from_csv.y]
    assert {len(x) for x in from_ts.x} == set(range(7, 27)) - {8, 25} or min(len(x) for x in from_ts.x) == 7


def archive_ts_files(folder: Path) -> dict:
    """{name: (path, regression)}: .ts files as the archive writes them: univariate and multivariate, equal and
    unequal length, class and target labels, missing values."""
    rng = np.random.default_rng(7)
    cases = {"univariate equal": (1, [24] * 12, False), "multivariate unequal": (3, list(rng.integers(5, 30, 12)), False),
             "regression equal": (2, [16] * 12, True), "univariate unequal with gaps": (1, list(rng.integers(8, 40, 12)), False)}  # fmt: skip
    files = {}
    for name, (channels, lengths, regression) in cases.items():
        equal = len(set(lengths)) == 1
        labels = [f"{v:.3f}" for v in rng.normal(size=len(lengths))] if regression else [str(i % 3) for i in range(len(lengths))]
        header = [f"@problemName {name.replace(' ', '_')}", "@timeStamps false", f"@missing {'gaps' in name}".lower(),
                  f"@univariate {channels == 1}".lower(), f"@dimensions {channels}", f"@equalLength {equal}".lower()]  # fmt: skip
        header += [f"@seriesLength {lengths[0]}"] if equal else []
        header += ["@targetLabel true"] if regression else ["@classLabel true 0 1 2"]
        rows = []
        for length, label in zip(lengths, labels):
            values = np.round(rng.normal(size=(channels, length)), 5).astype(str)
            if "gaps" in name:
                values[0, rng.integers(1, length)] = "?"
            rows.append(":".join(",".join(channel) for channel in values) + f":{label}")
        path = folder / f"{name.replace(' ', '_')}.ts"
        path.write_text("\n".join(header + ["@data", *rows]) + "\n")
        files[name] = (path, regression)
    if VOWELS.exists():
        files["Japanese Vowels (the archive's)"] = (VOWELS / "JapaneseVowels_TRAIN.ts", False)
    return files


def test_ts_files_read_as_sktimes_own_loader_reads_them(tmp_path):
    """Our .ts reader against sktime's load_from_tsfile (the reference loader of the archive's format)."""
    sktime = pytest.importorskip("sktime.datasets")
    for name, (path, regression) in archive_ts_files(tmp_path).items():
        series, labels, header = read_ts(path)
        frame, expected = sktime.load_from_tsfile(str(path), return_data_type="nested_univ",
                                                  y_dtype="float" if regression else "str")  # fmt: skip
        assert len(series) == len(frame), name
        for index, values in enumerate(series):
            reference = np.stack([frame.iloc[index, c].to_numpy(np.float32) for c in range(frame.shape[1])], axis=1)
            np.testing.assert_array_equal(values, reference, err_msg=f"{name}, series {index}")
        if regression:
            np.testing.assert_allclose(labels, expected.astype(float), err_msg=name)
        else:
            assert [str(label) for label in labels] == list(expected), name
        assert header["kind"] == ("value" if regression else "class"), name


def test_ts_headers_in_any_case_missing_values_and_regression(tmp_path):
    (tmp_path / "r.ts").write_text("#c\n@problemName R\n@targetLabel true\n@data\n1,2,?,4:0.5\n3,4:1.25\n")
    series, labels, header = read_ts(tmp_path / "r.ts")
    assert header["kind"] == "value" and labels == [0.5, 1.25]
    assert np.isnan(series[0][2, 0]) and series[1].shape == (2, 1)
    with pytest.raises(UserError, match="step 3, feature 'dim0' is empty"):
        read_sequences(tmp_path / "r.ts")
    filled = read_sequences(tmp_path / "r.ts", missing="previous")
    assert filled.x[0][:, 0].tolist() == [1, 2, 2, 4]


def bad_files(folder: Path) -> dict:
    """{case: (file, extra args, message)} for the refusals the issue names."""
    xs, ys = peak_sequences(1, 30)
    write_long(folder / "good.csv", xs, ys)
    text = (folder / "good.csv").read_text().splitlines()
    nonnumeric = text[:5] + [text[5].replace(text[5].split(",")[2], "abc", 1)] + text[6:]
    (folder / "nonnumeric.csv").write_text("\n".join(nonnumeric) + "\n")
    hole = text[:3] + [",".join(text[3].split(",")[:2] + [""] + text[3].split(",")[3:])] + text[4:]
    (folder / "hole.csv").write_text("\n".join(hole) + "\n")
    write_long(folder / "oneclass.csv", xs, ["c0"] * len(ys))
    write_long(folder / "unseen.csv", xs[:5], ["zz"] * 5)
    write_long(folder / "twofeatures.csv", [x[:, :2] for x in xs[:5]], ys[:5])
    (folder / "empty.csv").write_text("")
    (folder / "data.xlsx").write_text("x")
    np.savez(folder / "nosteps.npz", x=np.zeros((3, 4, 2), np.float32), lengths=np.array([4, 0, 2]), y=np.array(["a", "b", "a"]))
    long = ["--id", "seq", "--order", "t", "--label", "label"]
    return {
        "misspelt column": ("good.csv", ["--id", "sequence", "--order", "t", "--label", "label"], "no column 'sequence'"),
        "misspelt label": ("good.csv", ["--id", "seq", "--order", "t", "--label", "lable"], "did you mean 'label'?"),
        "non-numeric cell": ("nonnumeric.csv", long, "row 6, column 'f0': 'abc' is not a number"),
        "empty cell": ("hole.csv", long, "is empty or not a number: fill it, or pass -o missing=zero"),
        "one class": ("oneclass.csv", long, "every sequence has the class 'c0'"),
        "unseen test label": (
            "good.csv",
            [*long, "--test", str(folder / "unseen.csv")],
            "has the class 'zz', never seen in training",
        ),
        "other features": (
            "good.csv",
            [*long, "--test", str(folder / "twofeatures.csv")],
            "has 2 features a step, the training file 3",
        ),
        "no steps": ("nosteps.npz", [], "sequence '1' has no steps"),
        "empty file": ("empty.csv", long, "is empty"),
        "unknown extension": ("data.xlsx", [], "unknown kind of file '.xlsx'"),
        "missing file": ("nope.csv", long, "no such file"),
    }


def test_each_bad_input_is_one_line_and_leaves_no_run(tmp_path):
    cases = bad_files(tmp_path)
    for case, (name, args, message) in cases.items():
        out = tmp_path / "runs" / case.replace(" ", "-")
        done = run_cli("fit", "sequences", "--train", str(tmp_path / name), *args, "--out", str(out))
        assert done.returncode == 2, (case, done.stderr)
        assert done.stderr.count("\n") == 1 and message in done.stderr, (case, done.stderr)
        assert not out.exists(), case


@pytest.mark.parametrize(
    "options, message",
    [
        ({"crop": 2}, "crop must be in (0, 1], got 2"),
        ({"summary": "yes"}, "summary must be true or false"),
        ({"pool": "max"}, "pool must be one of last, mean"),
        ({"members": 0}, "members must be a whole number >= 1"),
        ({"conv_filters": [64, 0]}, "conv_filters must be a list of whole numbers >= 1"),
        ({"conv_filters": [64], "conv_widths": [8, 5]}, "conv_filters and conv_widths must be as long"),
    ],
)
def test_each_bad_option_is_refused_before_the_file_is_read(options, message, tmp_path):
    from kerasrnn.tasks import get_task

    with pytest.raises(UserError, match=re.escape(message)):
        get_task("sequences").make_config({"train": str(tmp_path / "never-read.csv"), **options})


def test_a_file_too_large_for_memory_is_refused_saying_how_big(tmp_path, monkeypatch):
    xs, ys = peak_sequences(2, 10)
    write_long(tmp_path / "big.csv", xs, ys)
    monkeypatch.setattr(readers, "available_memory", lambda: 1000)
    with pytest.raises(UserError, match=r"too large for this machine's memory: about .* GiB of values"):
        read_sequences(tmp_path / "big.csv", **LONG)


@pytest.fixture(scope="module")
def peaks_run(tmp_path_factory):
    import kerasrnn

    folder = tmp_path_factory.mktemp("peaks")
    xs, ys = peak_sequences(3, 320)
    write_long(folder / "train.csv", xs[:240], ys[:240])
    write_long(folder / "test.csv", xs[240:], ys[240:])
    run = kerasrnn.fit("sequences", train=str(folder / "train.csv"), test=str(folder / "test.csv"), **LONG, units=16,
                       epochs=20, patience=6, out=folder / "run", verbose=0, log=lambda line: None)  # fmt: skip
    return run, folder


def test_a_fit_on_mixed_lengths_learns_which_channel_peaked_first(peaks_run):
    run, _ = peaks_run
    metrics = run.metrics
    assert metrics["config"]["classes"] == ["c0", "c1", "c2"] and metrics["config"]["feature_names"] == ["f0", "f1", "f2"]
    assert metrics["test"]["accuracy"] > 0.85 and metrics["test"]["samples"] == 80  # chance: 1/3
    assert metrics["validation"]["accuracy"] > 0.8 and metrics["objective"]["name"] == "accuracy"


def test_evaluate_and_predict_read_a_file(peaks_run, tmp_path):
    run, folder = peaks_run
    again = run.evaluate(data=folder / "test.csv")
    assert again["test"] == pytest.approx(run.metrics["test"])
    xs, ys = peak_sequences(4, 6)
    write_long(tmp_path / "mine.csv", xs, ys)
    answers = run.predict([str(tmp_path / "mine.csv")])["predictions"]
    assert [answer["id"] for answer in answers] == [f"s{i}" for i in reversed(range(6))]
    assert sum(answer["label"] == ys[int(answer["id"][1:])] for answer in answers) >= 4
    assert all(0 < answer["confidence"] <= 1 for answer in answers)


@pytest.mark.slow  # the default suite's time
def test_inspect_shows_a_persons_sequence_and_probes_the_label_by_step(peaks_run, tmp_path):
    """The label (which channel peaked first) is probed in the forward states after each step: unknown before
    any peak, known once most sequences have had one; the backward direction (it has read ahead) is left out."""
    run, folder = peaks_run
    xs, ys = peak_sequences(6, 2)
    write_long(tmp_path / "mine.csv", xs, ys)
    done = run_cli("inspect", str(run.path), str(tmp_path / "mine.csv"), "--json")
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["steps"] == len(xs[1])  # the file's first sequence (rows are written last sequence first)
    assert [layer["name"] for layer in found["layers"]] == ["bidirectional_gru_1 forward", "bidirectional_gru_1 backward"]
    probe = found["probes"]["label"]
    lengths = [len(x) for x in peak_sequences(3, 320)[0][:240]]
    assert len(probe["by_step"]) == int(np.median(lengths))
    assert probe["by_step"][0] < 0.6 and probe["by_step"][-1] > 0.85, probe
    assert probe["fit_sequences"] + probe["scored_sequences"] == sum(n >= np.median(lengths) for n in lengths)


@pytest.mark.slow
def test_a_regression_target_reports_rmse_and_mae(tmp_path):
    import kerasrnn

    rng = np.random.default_rng(5)
    xs = [rng.normal(0, 1, (int(rng.integers(4, 12)), 2)).astype(np.float32) for _ in range(200)]
    y = np.array([1000.0 + 20.0 * x[:, 0].sum() for x in xs])  # far from 0, in units of its own
    np.savez(tmp_path / "train.npz", x=np.array(xs, dtype=object), y=y)
    run = kerasrnn.fit("sequences", train=str(tmp_path / "train.npz"), units=8, epochs=3, out=tmp_path / "run",
                       verbose=0, log=lambda line: None)  # fmt: skip
    assert run.metrics["config"]["kind"] == "value"
    assert set(run.metrics["validation"]) == {"loss", "rmse", "mae"} and run.metrics["objective"]["name"] == "loss"
    # The answer is rescaled to the targets' units inside the model: three epochs start from the mean and beat it.
    assert run.metrics["validation"]["rmse"] < y.std()  # without the rescaling: about 1000, the answer starting at 0


def test_a_regression_run_with_a_test_file_reports_rmse_and_mae_on_the_command_line(tmp_path, cli_here):
    from kerasrnn.runs import describe_test

    assert describe_test({"loss": 0.25, "rmse": 0.5, "mae": 0.4}) == "test loss 0.25 (MSE), RMSE 0.5, MAE 0.4"
    rng = np.random.default_rng(6)
    xs = [rng.normal(0, 1, (int(rng.integers(4, 9)), 2)).astype(np.float32) for _ in range(60)]
    np.savez(tmp_path / "train.npz", x=np.array(xs, dtype=object), y=np.array([x[:, 0].sum() for x in xs]))
    done = cli_here("fit", "sequences", "--train", str(tmp_path / "train.npz"), "--test", str(tmp_path / "train.npz"),
                   "--units", "4", "--epochs", "1", "-o", "conv_filters=[4]", "-o", "conv_widths=[2]",
                   "--out", str(tmp_path / "run"), "--quiet")  # fmt: skip
    assert done.returncode == 0, done.stderr[-1500:]
    assert "RMSE" in done.stdout + done.stderr and (tmp_path / "run" / "metrics.json").exists()


def test_artifacts_of_a_masked_run_answer_as_the_run_does_at_three_lengths(peaks_run, tmp_path):
    """A unidirectional masked run: SavedModel, LiteRT (streaming) and ONNX on one file of sequences of 3 lengths;
    the default run (bidirectional, with the convolution branch): SavedModel, ONNX and LiteRT at a fixed window
    of NaN-padded steps (a sequence longer than the window refused in one line)."""
    import kerasrnn

    _, folder = peaks_run
    run = kerasrnn.fit("sequences", train=str(folder / "train.csv"), **LONG, units=8, epochs=1, bidirectional=False,
                       conv_filters=[], conv_widths=[], out=tmp_path / "run", verbose=0, log=lambda line: None)  # fmt: skip
    xs, ys = peak_sequences(6, 30)
    lengths = {len(x) for x in xs}
    assert len(lengths) >= 3
    write_long(tmp_path / "mixed.csv", xs, ys)
    expected = run.predict([str(tmp_path / "mixed.csv")])["predictions"]
    for fmt in ("savedmodel", "tflite", "onnx"):
        artifact = run.export(fmt, out=tmp_path / {"savedmodel": "sm", "tflite": "m.tflite", "onnx": "m.onnx"}[fmt])
        got = kerasrnn.load(artifact).predict([str(tmp_path / "mixed.csv")])["predictions"]
        assert [a["label"] for a in got] == [a["label"] for a in expected], fmt
        assert max(abs(a["confidence"] - b["confidence"]) for a, b in zip(got, expected)) < 1e-5, fmt
    metadata = json.loads((tmp_path / "m.tflite.json").read_text())
    assert metadata["interface"]["mode"] == "streaming"
    default_run, _ = peaks_run  # the default model (bidirectional, the convolution branch)
    expected = default_run.predict([str(tmp_path / "mixed.csv")])["predictions"]
    names = {"savedmodel": "default-sm", "onnx": "default.onnx", "tflite": "default.tflite"}
    for fmt in ("savedmodel", "onnx", "tflite"):
        artifact = default_run.export(fmt, out=tmp_path / names[fmt])
        got = kerasrnn.load(artifact).predict([str(tmp_path / "mixed.csv")])["predictions"]
        assert [a["label"] for a in got] == [a["label"] for a in expected], fmt
        assert max(abs(a["confidence"] - b["confidence"]) for a, b in zip(got, expected)) < 1e-5, fmt
    with pytest.raises(UserError, match="--window sets a LiteRT artifact's steps: use it with --format tflite"):
        default_run.export("onnx", out=tmp_path / "other.onnx", window=32)
    interface = json.loads((tmp_path / "default.tflite.json").read_text())["interface"]
    assert interface["mode"] == "window" and interface["window"] == 64  # twice the longest (20 steps), at least 64
    xs, ys = peak_sequences(7, 1)
    write_long(tmp_path / "long.csv", [np.tile(xs[0], (8, 1))[:70]], ys)  # 70 steps: past the window
    with pytest.raises(UserError, match="a sequence of 70 steps is longer than this LiteRT artifact's window of 64"):
        kerasrnn.load(tmp_path / "default.tflite").predict([str(tmp_path / "long.csv")])


@pytest.mark.parametrize("per_step", [False, True])
def test_the_convolution_branch_reads_each_sequence_alone_whatever_pads_it(per_step):
    """Padding zeroed before each convolution, batch normalisation and the mean over the real steps only: a
    sequence in a NaN-padded batch gets what it gets alone (a prefix padded with NaN answers as the prefix)."""
    import keras

    from kerasrnn.modeling.layers import SequenceInput
    from kerasrnn.tasks.sequences import convolution_branch, pad

    inputs = keras.Input((None, 3))
    features = SequenceInput([0.5, 0.0, -0.5], [1.0, 2.0, 0.5])(inputs)
    config = {"conv_filters": [4, 5], "conv_widths": [3, 2], "per_step": per_step}
    model = keras.Model(inputs, convolution_branch(config, features, ""))
    rng = np.random.default_rng(1)
    for layer in model.layers:  # moving statistics away from 0 and 1, so that they count
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.uniform(-0.2, 0.2, layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, layer.moving_variance.shape))
    xs, _ = peak_sequences(7, 6)
    together = model.predict(pad(xs, 3), verbose=0)
    for row, x in enumerate(xs):
        alone = model.predict(x[None], verbose=0)[0]
        got = together[row, : len(x)] if per_step else together[row]
        np.testing.assert_allclose(got, alone, atol=1e-5)
    if not per_step:  # the padding changes nothing, and the sequence does: the branch reads it
        assert np.abs(together[0] - together[1]).max() > 1e-3


def test_serve_answers_json_numbers_and_uploads_and_never_reads_a_path(peaks_run, tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from kerasrnn.serving import routes, server

    run, folder = peaks_run
    client = TestClient(server.create_app(run.path))
    xs, ys = peak_sequences(7, 4)
    write_long(tmp_path / "mine.csv", xs, ys)
    expected = run.predict([str(tmp_path / "mine.csv")])["predictions"]  # listed last to first in the long file
    numbers = client.post("/predict", json={"sequences": [x.tolist() for x in reversed(xs)]})
    assert numbers.status_code == 200, numbers.text
    got = numbers.json()["predictions"]
    assert [a["label"] for a in got] == [a["label"] for a in expected]
    assert max(abs(a["confidence"] - b["confidence"]) for a, b in zip(got, expected)) < 1e-5
    with open(tmp_path / "mine.csv", "rb") as handle:
        uploaded = client.post("/predict", files={"file": ("mine.csv", handle, "text/csv")})
    assert uploaded.status_code == 200 and uploaded.json()["predictions"] == expected
    path = client.post("/predict", json={"inputs": [str(folder / "train.csv")]})
    assert path.status_code == 422 and "never a path on the server" in path.json()["detail"]
    ragged = client.post("/predict", json={"sequences": [[[1.0, 2.0, 3.0], [1.0]]]})
    assert ragged.status_code == 422 and "every step" in ragged.json()["detail"]
    many = client.post("/predict", json={"sequences": [[[0.0, 0.0, 0.0]]] * (routes.MAX_SEQUENCES + 1)})
    assert many.status_code == 422 and "too many sequences" in many.json()["detail"]
    listed = np.empty(1, dtype=object)
    listed[:] = [xs[0]]
    np.savez(tmp_path / "pickled.npz", x=listed)
    with open(tmp_path / "pickled.npz", "rb") as handle:
        pickled = client.post("/predict", files={"file": ("p.npz", handle, "application/octet-stream")})
    assert pickled.status_code == 422 and "not a list of arrays" in pickled.json()["detail"]


def test_serve_steps_answer_a_bidirectional_run_after_each_step_from_that_prefix_alone(peaks_run):
    """/steps of a bidirectional run: at step t, the answer to the first t steps alone (nothing after t read);
    at the last step, the answer itself."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from kerasrnn.serving import server

    run, _ = peaks_run
    client = TestClient(server.create_app(run.path))
    x = peak_sequences(9, 1)[0][0]
    steps = client.post("/steps", json={"sequences": [x.tolist()]})
    assert steps.status_code == 200, steps.text
    found = steps.json()
    assert len(found["steps"]) == len(x) and found["classes"] == ["c0", "c1", "c2"] and found["length"] == len(x)
    for t in (1, len(x) // 2, len(x)):
        alone = client.post("/predict", json={"sequences": [x[:t].tolist()]}).json()["predictions"][0]
        assert np.argmax(found["steps"][t - 1]) == ["c0", "c1", "c2"].index(alone["label"])
        assert abs(max(found["steps"][t - 1]) - alone["confidence"]) < 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_a_fit_of_sequences_on_two_devices(backend, tmp_path):
    """--devices 2 on mixed lengths: 125 training sequences, so the last batch (13) splits unevenly."""
    pytest.importorskip(backend)
    xs, ys = peak_sequences(10, 197)
    write_long(tmp_path / "train.csv", xs[:157], ys[:157])
    write_long(tmp_path / "test.csv", xs[157:], ys[157:])
    run = tmp_path / "run"
    done = run_cli("fit", "sequences", "--train", str(tmp_path / "train.csv"), "--test", str(tmp_path / "test.csv"),
                   "--id", "seq", "--order", "t", "--label", "label", "--devices", "2", "--backend", backend,
                   "--epochs", "2", "-o", "units=8", "--out", str(run), "--quiet")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "train on 125" in done.stdout
    metrics = json.loads((run / "metrics.json").read_text())
    assert len(metrics["distribution"]["devices"]) == 2 and metrics["test"]["samples"] == 40
    assert metrics["epochs_run"] == 2


@pytest.mark.slow
def test_a_long_univariate_series_is_read_as_rows_and_learns(tmp_path):
    import kerasrnn

    rng = np.random.default_rng(8)

    def write(path, count):
        lines = ["label," + ",".join(f"t{i}" for i in range(140))]
        for _ in range(count):
            kind, steps = int(rng.integers(0, 2)), int(rng.integers(110, 141))
            series = np.sin(2 * np.pi * (0.03, 0.09)[kind] * np.arange(steps) + rng.uniform(0, 6)) + rng.normal(0, 0.3, steps)
            lines.append(f"k{kind}," + ",".join(f"{v:.3f}" for v in series) + "," * (140 - steps))
        path.write_text("\n".join(lines) + "\n")

    write(tmp_path / "train.csv", 120)
    write(tmp_path / "test.csv", 60)
    run = kerasrnn.fit("sequences", train=str(tmp_path / "train.csv"), test=str(tmp_path / "test.csv"), units=16, epochs=15,
                       out=tmp_path / "run", verbose=0, log=lambda line: None)  # fmt: skip
    assert run.metrics["config"]["fold_width"] == 12  # ceil(sqrt(median length))
    assert run.metrics["test"]["accuracy"] > 0.9
    artifact = run.export("tflite", out=tmp_path / "m.tflite")  # folded: a window of raw values (2 x 140 -> 512)
    assert json.loads((tmp_path / "m.tflite.json").read_text())["interface"]["window"] == 512
    got = kerasrnn.load(artifact).predict([str(tmp_path / "test.csv")])["predictions"]
    expected = run.predict([str(tmp_path / "test.csv")])["predictions"]
    assert max(abs(a["confidence"] - b["confidence"]) for a, b in zip(got, expected)) < 1e-5


@pytest.mark.slow
def test_a_label_per_step_is_learnt_and_answered_per_step(tmp_path):
    import kerasrnn

    rng = np.random.default_rng(9)
    xs = [rng.normal(0, 1, (int(rng.integers(5, 15)), 2)).astype(np.float32) for _ in range(240)]
    ys = [np.where(np.cumsum(x[:, 0]) > 0, "up", "down") for x in xs]  # needs the running sum: memory
    longest = max(len(x) for x in xs)
    padded, labels = np.zeros((len(xs), longest, 2), np.float32), np.full((len(xs), longest), "down", dtype=object)
    for index, (x, y) in enumerate(zip(xs, ys)):
        padded[index, : len(x)], labels[index, : len(y)] = x, y
    np.savez(tmp_path / "train.npz", x=padded, lengths=np.array([len(x) for x in xs]), y=labels.astype(str))
    run = kerasrnn.fit("sequences", train=str(tmp_path / "train.npz"), test=str(tmp_path / "train.npz"), units=16,
                       epochs=15, out=tmp_path / "run", verbose=0, log=lambda line: None)  # fmt: skip
    assert run.metrics["config"]["per_step"] and run.metrics["config"]["classes"] == ["down", "up"]
    assert run.metrics["test"]["accuracy"] > 0.85
    answers = run.predict([str(tmp_path / "train.npz")])["predictions"]
    assert [len(answer["labels"]) for answer in answers[:5]] == [len(x) for x in xs[:5]]


def test_arrays_in_memory_train_a_run_that_keeps_them_as_files(tmp_path):
    """`kerasrnn.fit("sequences", x=..., y=...)`: the arrays kept as NPZ files named by their content beside the
    run (the same arrays: the same file), read back as the same sequences; a y of the wrong length is one line."""
    import kerasrnn

    xs, ys = peak_sequences(6, 200)
    quiet = {"units": 16, "epochs": 12, "conv_filters": [16], "conv_widths": [3], "verbose": 0, "log": lambda line: None}
    run = kerasrnn.fit("sequences", x=xs[:160], y=ys[:160], x_test=xs[160:], y_test=ys[160:], out=tmp_path / "run", **quiet)
    config = run.metrics["config"]
    assert Path(config["train"]).parent == (tmp_path / "arrays").resolve() and Path(config["test"]).is_file()
    again = read_sequences(config["train"])
    assert all(np.array_equal(a, b) for a, b in zip(again.x, xs[:160])) and list(again.y) == ys[:160]
    assert run.metrics["test"]["accuracy"] > 0.6 and run.metrics["test"]["samples"] == 40  # chance: 1/3
    assert run.evaluate()["test"] == pytest.approx(run.metrics["test"])  # a later command finds the arrays
    second = kerasrnn.fit("sequences", x=xs[:160], y=ys[:160], out=tmp_path / "second", **{**quiet, "epochs": 1})
    assert second.metrics["config"]["train"] == config["train"]
    with pytest.raises(UserError, match="y has 3 entries for 160 sequences"):
        kerasrnn.fit("sequences", x=xs[:160], y=ys[:3], out=tmp_path / "bad", **quiet)
    assert not (tmp_path / "bad").exists()


def test_tune_works_on_a_file_of_sequences_and_a_finished_trial_refuses_resume(peaks_run, tmp_path, cli_here):
    """A search on a person's own file: trials chosen on validation, the test file read once, for the chosen
    trial; a finished run refuses --resume in one line."""
    _, folder = peaks_run
    files = sequence_search_flags(folder)
    done = cli_here("tune", "sequences", *files, "--max-trials", "2", "--out", str(tmp_path / "search"), "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    document = json.loads(done.stdout)
    assert document["chosen_on"] == "validation" and len(document["trials"]) == 2
    tested = [
        trial["id"] for trial in document["trials"] if json.loads((Path(trial["run"]) / "metrics.json").read_text())["test"]
    ]
    assert tested == [document["best"]["id"]] and document["best"]["test"]["samples"] == 80
    again = cli_here("fit", "sequences", *files, "--out", document["best"]["run"], "--resume")
    assert again.returncode == 2 and "finished run" in again.stderr and len(again.stderr.strip().splitlines()) == 1


def sequence_search_flags(folder: Path) -> list[str]:
    return ["--train", str(folder / "train.csv"), "--test", str(folder / "test.csv"), "--id", "seq", "--order", "t",
            "--label", "label", "-o", "units=8", "-o", "conv_filters=[8]", "-o", "conv_widths=[3]", "--epochs", "1"]  # fmt: skip


@pytest.mark.slow  # the default suite's time (tune on a file of sequences stays in it)
def test_sweep_bench_and_resume_work_on_a_file_of_sequences(peaks_run, tmp_path, cli_here):
    """A sweep's table; bench without a test file; `--resume` of a run never begun starts it."""
    _, folder = peaks_run
    files = sequence_search_flags(folder)
    swept = cli_here("sweep", "sequences", *files, "--cells", "lstm", "--out", str(tmp_path / "sweep"))
    assert swept.returncode == 0, swept.stderr[-2000:]
    assert "lstm" in swept.stdout and "validation" in swept.stdout
    untested = [*files[:2], *files[4:-2], "-o", "epochs=1"]  # no test file; bench takes epochs as an option
    benched = cli_here("bench", "sequences", *untested, "--backends", "tensorflow", "--out", str(tmp_path / "bench"), "--json")
    assert benched.returncode == 0, benched.stderr[-2000:]
    assert json.loads(benched.stdout)["results"][0]["test_accuracy"] is None
    fresh = cli_here("fit", "sequences", *files, "--out", str(tmp_path / "run"), "--resume")
    assert fresh.returncode == 0 and "starting it" in fresh.stdout + fresh.stderr


def test_on_jax_a_batch_is_padded_to_a_power_of_two_steps_and_the_padding_is_masked(monkeypatch):
    """JAX compiles a step for every batch shape: there batches of lengths 6-20 take 8, 16 or 32 steps."""
    import keras

    from kerasrnn.tasks.sequences import TASK

    xs, _ = peak_sequences(5, 30)
    config = {"feature_names": ["f0", "f1", "f2"], "per_step": False, "kind": "class"}
    y = [0] * len(xs)
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    for start in range(0, 30, 5):
        indices = list(range(start, start + 5))
        inputs, _ = TASK.batch(config, xs, y, indices)
        longest = max(len(xs[i]) for i in indices)
        assert inputs.shape[1] in (8, 16, 32) and longest <= inputs.shape[1] < 2 * longest
        assert np.isnan(inputs[:, longest:]).all()  # padding, which SequenceInput masks
    monkeypatch.setattr(keras.backend, "backend", lambda: "tensorflow")
    inputs, _ = TASK.batch(config, xs, y, [0, 1])
    assert inputs.shape[1] == max(len(xs[0]), len(xs[1]))


def test_one_channel_keeps_the_recurrent_model_alone_and_the_log_says_so(files, tmp_path):
    """The convolution branch is the default for several channels; a univariate file's recipe leaves it out
    (docs/sequences.md measured both), and an option given wins over the recipe."""
    from kerasrnn.tasks import get_task

    folder, xs, ys = files
    np.savez(tmp_path / "one.npz", x=np.array([x[:, :1] for x in xs], dtype=object), y=np.array(ys))
    task, heard = get_task("sequences"), []
    several = task.make_config({"train": str(folder / "listed.npz")}, log=heard.append)
    assert several["conv_filters"] == [128, 256, 128] and several["lr"] == 1e-3 and not heard
    one = task.make_config({"train": str(tmp_path / "one.npz")}, log=heard.append)
    assert one["conv_filters"] == [] and one["lr"] == 2e-3 and "one channel: the recurrent model alone" in heard[0]
    asked = task.make_config({"train": str(tmp_path / "one.npz"), "conv_filters": [8], "conv_widths": [3]})
    assert asked["conv_filters"] == [8] and asked["lr"] == 2e-3


def test_a_folded_series_branch_reads_its_values_and_each_series_alone(monkeypatch):
    """A long univariate series: the recurrent layers read its rows, the convolution branch its values one by one
    (one channel); a series answers the same alone or NaN-padded in a batch of longer ones."""
    import keras

    from kerasrnn.tasks.sequences import TASK, Split, pad

    rng = np.random.default_rng(2)
    xs = [rng.normal(size=(int(rng.integers(90, 131)), 1)).astype(np.float32) for _ in range(5)]
    monkeypatch.setattr(TASK, "split_of", lambda config: Split(xs, [0] * 5, xs, [0] * 5, "all"))
    config = {**TASK.base_defaults(), **TASK.defaults, "units": 4, "conv_filters": [3, 4], "conv_widths": [5, 3],
              "kind": "class", "classes": ["a", "b"], "feature_names": ["v"], "per_step": False, "fold_width": 11}  # fmt: skip
    model = TASK.build_model(config)
    first = model.get_layer("convolution_0")
    assert tuple(first.kernel.shape) == (5, 1, 3) and model.get_layer("fold").output.shape[-1] == 11  # one value a step
    together = model.predict(pad(xs, 1), verbose=0)
    for row, x in enumerate(xs):
        np.testing.assert_allclose(together[row], model.predict(x[None], verbose=0)[0], atol=1e-5)
    assert isinstance(model.get_layer("standardise_values"), keras.layers.Layer)
