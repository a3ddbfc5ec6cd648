"""The shared batch probe of the ONNX runners (onnx2torch modules and onnxruntime sessions)."""

import logging

import numpy as np
import pytest
import torch

from nullswap.recognizers.batch_probe import batches_like_singles


def test_probe_accepts_a_graph_that_batches_torch_and_numpy():
    w = torch.randn(12, 5, generator=torch.Generator().manual_seed(0))
    z = torch.rand(2, 12, generator=torch.Generator().manual_seed(1))
    assert batches_like_singles(lambda t: t @ w, z, name="t", graph="ONNX")
    assert batches_like_singles(lambda a: a @ w.numpy(), z.numpy(), name="n", graph="onnxruntime")


def test_probe_rejects_mixing_and_failing_graphs(caplog):
    z = np.random.default_rng(0).random((2, 8)).astype(np.float32)
    with caplog.at_level(logging.INFO, logger="nullswap.recognizers.batch_probe"):
        # a graph that mixes the batch (e.g. a hard-coded Reshape [1, -1] followed by a reduction)
        assert not batches_like_singles(lambda a: np.repeat(a.mean(0, keepdims=True), a.shape[0], 0), z, name="mix",
                                        graph="onnxruntime")

        def fails(a):
            if a.shape[0] > 1:
                raise ValueError("Reshape: expected batch 1")
            return a

        assert not batches_like_singles(fails, z, name="fail", graph="ONNX")
    assert "mix: the onnxruntime graph does not batch" in caplog.text
    assert "fail: the ONNX graph does not batch" in caplog.text


def test_probe_lets_unexpected_errors_through():
    def broken(a):
        raise KeyError("not a batching problem")

    with pytest.raises(KeyError):
        batches_like_singles(broken, np.zeros((2, 3)), name="b", graph="ONNX")
    assert not batches_like_singles(broken, np.zeros((2, 3)), name="b", graph="onnxruntime", errors=(Exception,))
