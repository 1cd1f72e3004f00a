"""Where an estimator trains: the GPU Ray assigned, an explicit choice, or the CPU."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Placement", "device_report", "ray_gpu_ids", "resolve_placement"]


@dataclass(frozen=True)
class Placement:
    """Lightning's ``accelerator`` and ``devices``, and the torch device they mean."""

    accelerator: str  # "cpu" or "cuda"
    devices: int | list[int]
    reason: str

    @property
    def torch_device(self) -> str:
        """``cpu`` or ``cuda:<index>`` (an index among the visible devices)."""
        if self.accelerator == "cpu":
            return "cpu"
        index = self.devices[0] if isinstance(self.devices, list) else 0
        return f"cuda:{index}"


def ray_gpu_ids() -> list[int] | None:
    """The GPU ids Ray assigned to the current task or actor; None outside a Ray worker.

    Ray is only asked when it is already imported: a process that never imported it is not
    a Ray worker.
    """
    if "ray" not in sys.modules:
        return None
    import ray

    if not ray.is_initialized():
        return None
    try:
        context = ray.get_runtime_context()
        if context.get_task_id() is None and context.get_actor_id() is None:
            return None  # the driver
        return [int(g) for g in ray.get_gpu_ids()]
    except Exception:  # an odd Ray state must not stop training on CPU
        return None


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available()) and torch.cuda.device_count() > 0


def _indices(devices: Any) -> list[int]:
    if isinstance(devices, Sequence) and not isinstance(devices, str):
        return [int(d) for d in devices]
    return [0]


def resolve_placement(accelerator: str, devices: Any) -> Placement:
    """The placement for the estimator's ``accelerator`` and ``devices`` params.

    ``auto`` trains on CUDA only when it is available *and* assigned: inside a Ray task,
    when Ray assigned GPUs (it has set ``CUDA_VISIBLE_DEVICES`` to them, so the device is
    index 0); outside Ray, when torch sees a CUDA device. One device is used: an sklearn
    estimator fits in one process.

    Raises:
        RuntimeError: CUDA was asked for (or Ray assigned a GPU) but torch cannot use it.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>")
    if accelerator == "cpu":
        return Placement("cpu", 1, "accelerator='cpu'")
    if accelerator in ("gpu", "cuda"):
        if not _cuda_available():
            raise RuntimeError(
                f"accelerator={accelerator!r} but torch sees no CUDA device (torch CUDA "
                f"build: {_cuda_version()}, CUDA_VISIBLE_DEVICES={visible})"
            )
        return Placement("cuda", _indices(devices), f"accelerator={accelerator!r}")
    gpu_ids = ray_gpu_ids()
    if gpu_ids is not None:
        if not gpu_ids:
            return Placement("cpu", 1, "Ray assigned no GPU to this task")
        if not _cuda_available():
            raise RuntimeError(
                f"Ray assigned GPU(s) {gpu_ids} but torch sees no CUDA device (torch CUDA "
                f"build: {_cuda_version()}, CUDA_VISIBLE_DEVICES={visible})"
            )
        return Placement("cuda", _indices(devices), f"Ray assigned GPU(s) {gpu_ids}")
    if _cuda_available():
        return Placement("cuda", _indices(devices), "CUDA is available (not in Ray)")
    return Placement("cpu", 1, "no CUDA device")


def device_report(placement: Placement) -> dict[str, Any]:
    """Where a fit ran, as plain values: the device (and its name on CUDA), why it was
    chosen, ``CUDA_VISIBLE_DEVICES`` and the GPU ids Ray assigned (None outside Ray)."""
    import torch

    report: dict[str, Any] = {
        "device": placement.torch_device,
        "reason": placement.reason,
        "torch_cuda_available": bool(torch.cuda.is_available()),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "ray_gpu_ids": ray_gpu_ids(),
    }
    if placement.accelerator == "cuda":
        report["device_name"] = torch.cuda.get_device_name(torch.device(placement.torch_device))
    return report


def _cuda_version() -> str:
    import torch

    return str(torch.version.cuda or "none")
