"""Layers and models: ``fastdl.nn``.

A new layer type subclasses ``Layer`` and implements the protocol described in
``fastdl.nn.base``.  ``fastdl.load`` rebuilds fastdl's own layer types only: ``save``
refuses a model with a layer of another module (pickle such a model instead)."""
from fastdl.nn.activations import ELU, GELU, LeakyReLU, ReLU, Sigmoid, SiLU, Softmax, Tanh
from fastdl.nn.base import Layer
from fastdl.nn.conv import AvgPool2D, Conv2D, Flatten, MaxPool2D
from fastdl.nn.history import History
from fastdl.nn.layers import Dense, Dropout, Maxout, Residual
from fastdl.nn.model import Sequential
from fastdl.nn.persistence import load
from fastdl.nn.training import DivergenceWarning, GradientWarning

__all__ = ["Layer", "Dense", "ReLU", "Sigmoid", "Tanh", "LeakyReLU", "ELU", "GELU", "SiLU",
           "Softmax", "Maxout", "Dropout", "Residual", "Conv2D", "MaxPool2D", "AvgPool2D",
           "Flatten", "Sequential", "History",
           "GradientWarning", "DivergenceWarning", "load"]
