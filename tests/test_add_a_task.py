"""docs/add-a-task.md's toy task, loaded from the page as written: the toolkit fits, evaluates and predicts with it."""

import re
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def majority_task(monkeypatch):
    """The page's module as `kerasrnn.tasks.majority`, found by the registry like a file in kerasrnn/tasks/."""
    import kerasrnn.tasks

    [code] = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "add-a-task.md").read_text(), re.S)
    module = types.ModuleType("kerasrnn.tasks.majority")
    exec(compile(code, "docs/add-a-task.md", "exec"), module.__dict__)
    monkeypatch.setitem(sys.modules, "kerasrnn.tasks.majority", module)
    names = kerasrnn.tasks.task_names()
    monkeypatch.setattr(kerasrnn.tasks, "task_names", lambda: sorted([*names, "majority"]))
    return module.TASK


def test_the_toy_task_of_the_docs_fits_counts_and_answers(majority_task, tmp_path):
    import kerasrnn

    run = kerasrnn.fit("majority", cell="gru", out=tmp_path / "run", verbose=0, log=lambda line: None)
    assert run.metrics["test"]["accuracy"] > 0.95  # it learned to count ones against zeros
    assert set(run.metrics["by_length"]) == {str(n) for n in range(1, 19)}
    assert run.metrics["by_length"]["13"]["exact_accuracy"] > 0.85  # beyond its 9 training steps
    assert run.predict(["1", "1", "0", "1", "1"])["more_ones"] is True
    assert run.predict(["0000011"])["more_ones"] is False
    with pytest.raises(kerasrnn.UserError, match="majority reads bits 0 and 1"):
        run.predict(["12"])
    resumed = majority_task.training_dataset(run.config, first_epoch=1)
    whole = majority_task.training_batches(run.config)
    first_of_epoch_1 = next(iter(resumed))[0].numpy()
    assert (first_of_epoch_1 == next(whole(1))[0]).all()  # tf.data and the torch trainer read the same batches
