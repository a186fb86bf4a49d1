"""The contenders' names, one home for every module that makes or reads a row."""

from __future__ import annotations

OURS = "manual_bptt.bptt"
ORACLE = "reference.bptt (autograd oracle)"
NN_RNN = "torch.nn.RNN"
NN_RNN_WEIGHTS = "torch.nn.RNN (weights only)"
PRODUCTS = "bptt's matrix products alone"
GEMM_NP = "GEMM numpy"
GEMM_TORCH = "GEMM torch"
#: the torch module of each gated cell, and JAX's contender of every cell
TORCH_GATED = {"gru": "torch.nn.GRU", "lstm": "torch.nn.LSTM"}
JAX = {"rnn": "JAX jit(value_and_grad(scan))", "gru": "JAX GRU", "lstm": "JAX LSTM"}
