"""Layers and models: ``fastdl.nn``."""
from fastdl.nn.layers import (ELU, GELU, Dense, Dropout, Layer, LeakyReLU, Maxout, ReLU,
                              Residual, Sigmoid, SiLU, Softmax, Tanh)
from fastdl.nn.model import GradientWarning, History, Sequential, load

__all__ = ["Layer", "Dense", "ReLU", "Sigmoid", "Tanh", "LeakyReLU", "ELU", "GELU", "SiLU",
           "Softmax", "Maxout", "Dropout", "Residual", "Sequential", "History",
           "GradientWarning", "load"]
