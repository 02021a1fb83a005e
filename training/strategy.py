"""Choosing and creating the ``tf.distribute`` strategy the one training loop runs under.

``auto`` picks: a TPU when one is configured, ``multi_worker`` when ``TF_CONFIG`` names more than
one task, ``mirrored`` over several GPUs, else ``one_device`` (the GPU, or the CPU).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from keras_resnet.training.errors import UsageError

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker", "tpu")


@dataclass(frozen=True)
class StrategyPlan:
    """What will run, worked out before any TensorFlow op executes."""

    kind: str  # one_device | mirrored | multi_worker | tpu
    device_kind: str  # cpu | gpu | tpu
    num_workers: int
    replicas_per_worker: int
    is_chief: bool
    task_type: str
    task_index: int

    @property
    def num_replicas(self) -> int:
        return self.num_workers * self.replicas_per_worker


def parse_tf_config(raw: str | None) -> dict[str, Any] | None:
    """Validate ``TF_CONFIG`` (cluster of ``chief``/``worker`` host:port lists and a ``task``)."""
    if raw is None or not raw.strip():
        return None
    try:
        cfg = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise UsageError(f"invalid TF_CONFIG: not JSON ({exc.msg})") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("cluster"), dict):
        raise UsageError("invalid TF_CONFIG: needs a 'cluster' object")
    cluster = cfg["cluster"]
    for job, tasks in cluster.items():
        if job not in ("chief", "worker"):
            raise UsageError(f"invalid TF_CONFIG: job {job!r} is not supported (use chief/worker)")
        if not isinstance(tasks, list) or not tasks:
            raise UsageError(f"invalid TF_CONFIG: cluster.{job} must be a non-empty list")
        for address in tasks:
            host, _, port = str(address).rpartition(":")
            if not host or not port.isdigit():
                raise UsageError(f"invalid TF_CONFIG: address {address!r} is not host:port")
    if "worker" not in cluster and "chief" not in cluster:
        raise UsageError("invalid TF_CONFIG: cluster has no 'worker' list")
    if len(cluster.get("chief", [])) > 1:
        raise UsageError("invalid TF_CONFIG: at most one chief")
    task = cfg.get("task")
    if not isinstance(task, dict):
        raise UsageError("invalid TF_CONFIG: needs a 'task' object with 'type' and 'index'")
    task_type, index = task.get("type"), task.get("index", 0)
    if task_type not in cluster:
        raise UsageError(f"invalid TF_CONFIG: task type {task_type!r} is not in the cluster")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(cluster[task_type]):
        raise UsageError(f"invalid TF_CONFIG: task index {index!r} out of range for {task_type!r}")
    return cfg


def _tpu_configured() -> bool:
    return bool(os.environ.get("TPU_NAME") or os.environ.get("COLAB_TPU_ADDR")
                or os.path.exists("/dev/accel0"))


def plan_strategy(requested: str) -> StrategyPlan:
    """Work out the strategy, device kind and replica count without starting TensorFlow ops."""
    import tensorflow as tf

    if requested not in STRATEGIES:
        raise UsageError(f"unknown strategy {requested!r}; choose one of {', '.join(STRATEGIES)}")
    tf_config = parse_tf_config(os.environ.get("TF_CONFIG"))
    num_tasks = sum(len(v) for v in tf_config["cluster"].values()) if tf_config else 1
    if requested == "auto":
        if _tpu_configured():
            requested = "tpu"
        elif num_tasks > 1:
            requested = "multi_worker"
        elif len(tf.config.list_physical_devices("GPU")) > 1:
            requested = "mirrored"
        else:
            requested = "one_device"
    gpus = len(tf.config.list_physical_devices("GPU"))
    device_kind = "gpu" if gpus else "cpu"
    if requested == "tpu":
        return StrategyPlan("tpu", "tpu", 1, 0, True, "chief", 0)  # replicas known after connect
    if requested == "multi_worker":
        if tf_config is None:
            raise UsageError("--strategy multi_worker needs TF_CONFIG (see docs/training.md)")
        task_type, index = tf_config["task"]["type"], tf_config["task"].get("index", 0)
        has_chief = "chief" in tf_config["cluster"]
        is_chief = task_type == "chief" or (not has_chief and index == 0)
        return StrategyPlan("multi_worker", device_kind, num_tasks, max(gpus, 1), is_chief,
                            task_type, index)
    if requested == "mirrored":
        per_worker = gpus if gpus else len(tf.config.list_logical_devices("CPU"))
        return StrategyPlan("mirrored", device_kind, 1, max(per_worker, 1), True, "chief", 0)
    return StrategyPlan("one_device", device_kind, 1, 1, True, "chief", 0)


def create_strategy(plan: StrategyPlan) -> Any:
    """Create the ``tf.distribute.Strategy`` for ``plan``."""
    import tensorflow as tf

    if plan.kind == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
                tpu=os.environ.get("TPU_NAME", ""))
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, RuntimeError, tf.errors.OpError) as exc:
            raise UsageError(f"no TPU reachable: {str(exc).splitlines()[0]}") from None
        return tf.distribute.TPUStrategy(resolver)
    if plan.kind == "multi_worker":
        options = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.AUTO)
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    if plan.kind == "mirrored":
        if plan.device_kind == "gpu":
            return tf.distribute.MirroredStrategy()
        devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(
            devices=devices, cross_device_ops=tf.distribute.ReductionToOneDevice(reduce_to_device=devices[0]))
    device = "/gpu:0" if plan.device_kind == "gpu" else "/cpu:0"
    return tf.distribute.OneDeviceStrategy(device)
