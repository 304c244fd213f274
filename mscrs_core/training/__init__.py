"""Training: one loop (:mod:`.trainer`) and the tasks it runs (:mod:`.recommendation`, Eq. 22/24;
:mod:`.conversation`, Eq. 29), with atomic checkpoints and exact resume (:mod:`.checkpoint`)."""
from mscrs_core.training.recommendation import TrainConfig, TrainResult, evaluate, train
from mscrs_core.training.trainer import FitResult, Trainer, TrainerConfig

__all__ = ["FitResult", "TrainConfig", "TrainResult", "Trainer", "TrainerConfig", "evaluate", "train"]
