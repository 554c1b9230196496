"""Training engine: configs, methods, training and evaluation loops."""
from .config import TrainConfig
from .methods import METHODS, Method, register_method
from .trainer import Trainer, evaluate, evaluate_run, train

__all__ = ["TrainConfig", "METHODS", "Method", "register_method", "Trainer", "train", "evaluate", "evaluate_run"]
