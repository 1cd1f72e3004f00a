"""What raypipe makes of a cluster's autoscaler: whether it may add a node that holds a node's
demand, or has said it can add none (ray_nodes.engine.compiler.Autoscaling)."""

from __future__ import annotations

from ray_nodes.engine.compiler import Autoscaling

GPU_NODE = {"CPU": 1.0, "GPU": 1.0}
ONE_GPU = {"CPU": 1.0, "GPU": 1.0, "memory": 0.0}
FOUR_GPUS = {"CPU": 1.0, "GPU": 4.0, "memory": 0.0}


def test_known_node_types_decide() -> None:
    scaler = Autoscaling(node_types=[{"CPU": 4.0}, GPU_NODE])
    assert scaler.may_add(ONE_GPU)
    assert scaler.may_add(ONE_GPU, known_only=True)
    assert not scaler.may_add(FOUR_GPUS)
    assert scaler.refuses(FOUR_GPUS)
    assert not scaler.refuses(ONE_GPU)


def test_without_node_types_only_its_verdicts_are_known() -> None:
    # Ray's own autoscaler (v2) reports its state but no cluster config.
    scaler = Autoscaling(node_types=None, infeasible=[{"CPU": 1.0, "GPU": 4.0}])
    assert scaler.may_add(ONE_GPU)  # not refused: it may
    assert not scaler.may_add(ONE_GPU, known_only=True)  # but no node type is known to
    assert scaler.refuses(FOUR_GPUS)
    assert not scaler.may_add(FOUR_GPUS)
    assert not scaler.refuses(ONE_GPU)


def test_a_refusal_is_of_the_exact_request() -> None:
    # Ray leaves zero amounts out of a request and keeps four decimals of each.
    scaler = Autoscaling(
        infeasible=[{"CPU": 0.5, "GPU": 1.0, "memory": 2.0**30, "accelerator_type:H200": 0.001}]
    )
    asked = {"CPU": 0.5, "GPU": 1.0, "memory": 2.0**30, "accelerator_type:H200": 0.001}
    assert scaler.refuses(asked)
    assert scaler.refuses({**asked, "unused": 0.0})
    assert not scaler.refuses({**asked, "CPU": 1.0})  # another request
    assert not scaler.refuses({k: v for k, v in asked.items() if k != "memory"})
    assert not scaler.refuses({**asked, "gpu_box": 1.0})
