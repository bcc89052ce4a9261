"""Data-parallel training on several devices and several processes, with the backends' own engines.

TensorFlow: `tf.distribute.MirroredStrategy`, the model built and compiled in its scope. JAX:
`keras.distribution.DataParallel`, several processes joined by `keras.distribution.initialize`. The
installed Keras has no distribution for PyTorch, and Keras 3 does not support TensorFlow's
MultiWorkerMirroredStrategy: those are refused in one line (docs/distributed.md).

Device counts are fixed when a backend starts computing, so `start_devices` runs right after the backend
is chosen. Without N accelerators, N logical CPU devices stand in: they share the same cores, which makes
them a way to test a distributed set-up, not to go faster.
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from dataclasses import dataclass, field

from kerasrnn.errors import UserError, option

ALL = "all"
UPSTREAM_MULTI_WORKER = "keras-team/keras#20585"


@dataclass(frozen=True)
class Cluster:
    """Where this process sits in a multi-process JAX run: the coordinator's HOST:PORT, how many, which."""

    coordinator: str
    num_processes: int
    process_id: int


def parse_devices(text: str | int | None) -> int | str:
    """`--devices`: a positive count or 'all'."""
    if text is None:
        return 1
    if str(text).strip().lower() == ALL:
        return ALL
    try:
        count = int(str(text).strip())
    except ValueError:
        raise UserError(f"{option('devices')} takes a positive number or 'all', got {text!r}") from None
    if count < 1:
        raise UserError(f"{option('devices')} takes a positive number or 'all', got {text!r}")
    return count


def parse_cluster(coordinator: str | None, num_processes: int | None, process_id: int | None) -> Cluster | None:
    """The three multi-process options together, checked; None when none is given."""
    given = [value is not None for value in (coordinator, num_processes, process_id)]
    if not any(given):
        return None
    if not all(given):
        raise UserError("a multi-process fit needs all of --coordinator HOST:PORT, --num-processes P and --process-id I")
    host, sep, port = coordinator.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"{option('coordinator')} takes HOST:PORT (e.g. 127.0.0.1:9876), got {coordinator!r}")
    if num_processes < 1:
        raise UserError(f"{option('num_processes')} must be at least 1, got {num_processes}")
    if not 0 <= process_id < num_processes:
        raise UserError(f"{option('process_id')} must be in 0..{num_processes - 1}, got {process_id}")
    return Cluster(coordinator, num_processes, process_id)


def require_divisible(batch_size: int, devices: int) -> None:
    """The global batch must split evenly over every device (Keras raises ZeroDivisionError or a sharding
    error otherwise)."""
    if batch_size % devices:
        raise UserError(
            f"--batch-size {batch_size} does not split over {devices} devices: "
            f"use a multiple of {devices} (the batch size is the global batch)"
        )


def device_count(devices: int | str, cluster: Cluster | None) -> int | None:
    """How many devices a fit asks for over every process; None for 'all' (known once the backend starts)."""
    if devices == ALL:
        return None
    return devices * (cluster.num_processes if cluster else 1)


def start_devices(backend: str, devices: int | str, cluster: Cluster | None = None) -> None:
    """Make `devices` devices (per process) exist before the backend starts computing; join the cluster."""
    if devices == 1 and cluster is None:
        return
    if backend == "torch":
        raise UserError(
            f"{option('devices')} and multi-process fits need {option('backend', repr('tensorflow'), 'tensorflow')} or jax: "
            "the installed Keras has no distribution for PyTorch"
        )
    if backend == "tensorflow":
        if cluster is not None:
            raise UserError(
                "multi-process fits run on --backend jax: Keras 3 does not support TensorFlow's "
                f"MultiWorkerMirroredStrategy ({UPSTREAM_MULTI_WORKER})"
            )
        start_tensorflow_devices(devices)
    else:
        start_jax_devices(devices, cluster)


def start_tensorflow_devices(devices: int | str) -> None:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        if devices != ALL and devices > len(gpus):
            raise UserError(f"{option('devices', repr(devices), devices)}: this machine has {len(gpus)} GPU(s)")
        return
    if devices == ALL:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * devices)
    except RuntimeError:
        if len(tf.config.list_logical_devices("CPU")) != devices:
            raise UserError(
                f"{option('devices', repr(devices), devices)}: TensorFlow has already started in this process with another device count; "
                "start a new process (in a notebook: restart the kernel)"
            ) from None


def start_jax_devices(devices: int | str, cluster: Cluster | None) -> None:
    import jax

    # Logical CPU devices only matter where JAX computes on the CPU; on a GPU machine they are unused.
    if devices != ALL and devices > 1 and jax.config.values.get("jax_num_cpu_devices") != devices:
        try:
            jax.config.update("jax_num_cpu_devices", devices)
        except RuntimeError:
            raise UserError(
                f"{option('devices', repr(devices), devices)}: JAX has already started in this process; start a new process "
                "(in a notebook: restart the kernel)"
            ) from None
    if cluster is not None:
        import keras

        keras.distribution.initialize(cluster.coordinator, cluster.num_processes, cluster.process_id)


@dataclass
class Placement:
    """Where a fit trains: its devices, the engine that spreads each batch over them, and this process's part."""

    strategy: str | None  # None: one device, Keras' ordinary fit
    devices: list[str] = field(default_factory=list)
    processes: int = 1
    process_id: int = 0
    logical: bool = False  # logical CPU devices sharing the same cores
    _tf_strategy: object = None

    @property
    def distributed(self) -> bool:
        return self.strategy is not None

    @property
    def writes_run(self) -> bool:
        """Only process 0 writes the run directory; the others train alongside it."""
        return self.process_id == 0

    def scope(self):
        """Where the model is built and compiled: the strategy's scope on TensorFlow."""
        return self._tf_strategy.scope() if self._tf_strategy is not None else contextlib.nullcontext()

    def record(self) -> dict:
        """metrics.json's `distribution`."""
        return {
            "strategy": self.strategy or "none",
            "devices": self.devices,
            "processes": self.processes,
            "logical_cpu_devices": self.logical,
        }

    def describe(self) -> str:
        """The fit's log line."""
        kind = (
            "logical CPU devices (they share the same cores: a test of the set-up, not a speed-up)" if self.logical else "devices"
        )
        processes = f" in {self.processes} processes" if self.processes > 1 else ""
        return f"data-parallel on {len(self.devices)} {kind}{processes} with {self.strategy}"

    def end(self) -> None:
        """Leave the distribution: what follows (evaluation, prediction, export) runs on one device."""
        if self.strategy == "DataParallel":
            import keras

            keras.distribution.set_distribution(None)


def inside_distribution() -> bool:
    """Whether the model being built now is spread over devices (a TensorFlow strategy's scope, a Keras distribution)."""
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.distribute.has_strategy()
    return keras.backend.backend() == "jax" and keras.distribution.distribution() is not None


def place(devices: int | str) -> Placement:
    """The placement of a fit on `devices` devices per process (after `start_devices`)."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        return tensorflow_placement(devices)
    if backend == "jax":
        return jax_placement(devices)
    return Placement(strategy=None, devices=["device:0"])  # torch: one device (start_devices refused more)


def tensorflow_placement(devices: int | str) -> Placement:
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    pool = gpus or tf.config.list_logical_devices("CPU")
    chosen = pool if devices == ALL else pool[:devices]
    names = [device.name for device in chosen]
    if len(names) == 1:
        return Placement(strategy=None, devices=names)
    strategy = mirrored_strategy(tuple(names))
    return Placement(strategy="MirroredStrategy", devices=names, logical=not gpus, _tf_strategy=strategy)


@functools.cache
def mirrored_strategy(names: tuple[str, ...]):
    """One strategy per set of devices and process: a second MirroredStrategy over the same devices reuses
    its collective keys, and a later fit (a second `kerasrnn.fit` in a notebook) fails with shape mismatches."""
    import tensorflow as tf

    return tf.distribute.MirroredStrategy(list(names))


def jax_placement(devices: int | str) -> Placement:
    import jax
    import keras

    every = jax.devices()  # every process's devices of the default platform
    per_process = jax.local_device_count()
    if devices != ALL and devices > per_process:
        raise UserError(f"{option('devices', repr(devices), devices)}: this process has {per_process} device(s)")
    # Each process contributes its first `devices` devices (all of them for "all").
    taken = per_process if devices == ALL else devices
    chosen = [device for index in range(jax.process_count()) for device in
              [device for device in every if device.process_index == index][:taken]]  # fmt: skip
    names = [f"{device.platform}:{device.id}" for device in chosen]
    if len(names) == 1:
        return Placement(strategy=None, devices=names)
    distribution = keras.distribution.DataParallel(devices=names)
    # Every process draws the same global batch and takes its own slice (`slice_for_process`): the same
    # rule for training and validation data, whose uneven last batches Keras' own sharding cannot split.
    distribution.auto_shard_dataset = False
    keras.distribution.set_distribution(distribution)
    return Placement(
        strategy="DataParallel",
        devices=names,
        processes=jax.process_count(),
        process_id=jax.process_index(),
        logical=chosen[0].platform == "cpu" and per_process > 1,
    )


def slice_for_process(dataset, placement: Placement):
    """Each batch of `dataset` cut to what the devices can share, and this process's part of it.

    A training batch always splits evenly (`require_divisible`); a validation batch may lose its last
    examples (fewer than the device count), which one device would have scored: neither MirroredStrategy
    nor JAX's sharding takes a batch that the devices do not divide.
    """
    if not placement.distributed:
        return dataset
    import tensorflow as tf

    devices, processes, index = len(placement.devices), placement.processes, placement.process_id

    def cut(*batch):
        size = tf.shape(tf.nest.flatten(batch)[0])[0]
        share = size // devices * devices // processes
        part = tf.nest.map_structure(lambda tensor: tensor[index * share : (index + 1) * share], batch)
        return part if len(batch) > 1 else part[0]

    return dataset.map(cut)  # a map keeps the dataset's known length, which Keras' epoch loop reads


@contextlib.contextmanager
def run_folder(run_dir, placement: Placement):
    """The run directory for process 0; a scratch folder, removed afterwards, for the other processes."""
    if placement.writes_run:
        yield run_dir
        return
    with tempfile.TemporaryDirectory(prefix=f"kerasrnn-process-{placement.process_id}-") as scratch:
        yield os.path.join(scratch, "run")
