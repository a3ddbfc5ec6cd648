"""Imports every recognizer module so that each registers itself."""

from nullswap.recognizers import (  # noqa: F401
    arcface,
    facenet,
    human,
    mobilefacenet,
    onnx_models,
    resnet29,
)
