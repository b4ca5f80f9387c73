"""Layers and models: ``fastdl.nn``."""
from fastdl.nn.history import History
from fastdl.nn.layers import (ELU, GELU, Dense, Dropout, Layer, LeakyReLU, Maxout, ReLU,
                              Residual, Sigmoid, SiLU, Softmax, Tanh)
from fastdl.nn.model import Sequential
from fastdl.nn.persistence import load
from fastdl.nn.training import GradientWarning

__all__ = ["Layer", "Dense", "ReLU", "Sigmoid", "Tanh", "LeakyReLU", "ELU", "GELU", "SiLU",
           "Softmax", "Maxout", "Dropout", "Residual", "Sequential", "History",
           "GradientWarning", "load"]
