"""Training loop (pre-training Eq. 22, recommendation Eq. 24) with atomic checkpoints and exact resume."""
from mscrs_core.training.loop import TrainConfig, TrainResult, evaluate, train

__all__ = ["TrainConfig", "TrainResult", "evaluate", "train"]
