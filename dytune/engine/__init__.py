"""Training engine: configs, methods, the training loop, evaluation and finished runs, for every task."""
from ..run_config import TrainConfig
from .evaluation import evaluate
from ..methods import METHODS, Method, register_method
from .runs import budget_curve_run, evaluate_run, load_run
from .trainer import Trainer, train

__all__ = ["TrainConfig", "METHODS", "Method", "register_method", "Trainer", "train", "evaluate", "evaluate_run",
           "budget_curve_run", "load_run"]
