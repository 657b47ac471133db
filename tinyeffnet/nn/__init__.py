"""Layers and the Module system."""
from .module import Module, ModuleList
from .layers import (PADDINGS, BatchNorm2d, Conv2d, DepthwiseConv2d, DropConnect, Dropout, GlobalAvgPool,
                     Linear, Sigmoid, SqueezeExcite, Swish)
from .init import initialize, SCHEMES as INIT_SCHEMES

__all__ = ["Module", "ModuleList", "Conv2d", "DepthwiseConv2d", "Linear", "BatchNorm2d", "Swish",
           "Sigmoid", "GlobalAvgPool", "Dropout", "DropConnect", "SqueezeExcite", "initialize",
           "INIT_SCHEMES", "PADDINGS"]
