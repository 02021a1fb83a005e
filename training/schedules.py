"""Learning-rate schedules, functions of the optimizer's iteration count, so a resumed run
continues the schedule where it stopped.

* ``step``: multiply by ``factor`` at each boundary (He et al. 2015: /10 at 32k and 48k of 64k
  iterations on CIFAR, sec. 4.2; /10 on plateaus on ImageNet, sec. 3.4).
* ``cosine``: half-cosine from the peak to ``final_fraction * peak``.
* warm-up ``constant`` (sec. 4.2, ResNet-110: 0.01 until ~400 iterations) or ``linear``.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import tensorflow as tf


class RecipeSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Warm-up followed by a step or cosine decay over ``total_steps``."""

    def __init__(self, peak: float, total_steps: int, kind: str = "step",
                 boundaries: tuple[int, ...] = (), factor: float = 0.1,
                 final_fraction: float = 0.0, warmup_kind: str = "none", warmup_steps: int = 0,
                 warmup_lr: float = 0.0) -> None:
        super().__init__()
        if kind not in ("step", "cosine", "constant"):
            raise ValueError(f"unknown schedule {kind!r}")
        self.peak = float(peak)
        self.total_steps = int(total_steps)
        self.kind = kind
        self.boundaries = tuple(int(b) for b in boundaries)
        self.factor = float(factor)
        self.final_fraction = float(final_fraction)
        self.warmup_kind = warmup_kind
        self.warmup_steps = int(warmup_steps)
        self.warmup_lr = float(warmup_lr)

    def value(self, step: int) -> float:
        """The learning rate at ``step`` as a Python float (for logs and tests)."""
        return float(self(tf.constant(step, tf.int64)))

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        if self.kind == "step":
            drops = tf.zeros([], tf.float32)
            for boundary in self.boundaries:
                drops += tf.cast(step >= boundary, tf.float32)
            lr = self.peak * tf.pow(self.factor, drops)
        elif self.kind == "cosine":
            start = float(self.warmup_steps if self.warmup_kind == "linear" else 0)
            span = max(float(self.total_steps) - start, 1.0)
            progress = tf.clip_by_value((step - start) / span, 0.0, 1.0)
            floor = self.peak * self.final_fraction
            lr = floor + 0.5 * (self.peak - floor) * (1.0 + tf.cos(math.pi * progress))
        else:
            lr = tf.constant(self.peak, tf.float32)
        if self.warmup_steps > 0 and self.warmup_kind == "constant":
            lr = tf.where(step < self.warmup_steps, self.warmup_lr, lr)
        elif self.warmup_steps > 0 and self.warmup_kind == "linear":
            ramp = self.peak * (step + 1.0) / float(self.warmup_steps)
            lr = tf.where(step < self.warmup_steps, ramp, lr)
        return lr

    def get_config(self) -> dict[str, Any]:
        return {"peak": self.peak, "total_steps": self.total_steps, "kind": self.kind,
                "boundaries": list(self.boundaries), "factor": self.factor,
                "final_fraction": self.final_fraction, "warmup_kind": self.warmup_kind,
                "warmup_steps": self.warmup_steps, "warmup_lr": self.warmup_lr}
