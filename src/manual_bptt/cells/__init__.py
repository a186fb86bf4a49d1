"""Recurrent cells behind one small interface (see base.Cell); the drivers in manual_bptt.drivers
run any of them. numpy only.

    elman   s_t = f(U x_t + b + W s_{t-1})                               state s_t,              G = 1
    gru     r, z, n gates, torch's nn.GRU layout                         state s_t = h_t,        G = 3
    lstm    i, f, g, o gates, torch's nn.LSTM layout                     state s_t = [h_t; c_t], G = 4
"""

from .base import Cell, StepWeights
from .elman import ELMAN
from .gru import GRU
from .lstm import LSTM

__all__ = ["ELMAN", "GRU", "LSTM", "Cell", "StepWeights"]
