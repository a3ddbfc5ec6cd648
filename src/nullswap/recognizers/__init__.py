"""Face recognizers as differentiable PyTorch modules, behind one interface and a registry."""

from nullswap.recognizers.base import FaceRecognizer, RecognizerInfo
from nullswap.recognizers.registry import create_recognizer, list_recognizers, recognizer_info, register_recognizer

__all__ = [
    "FaceRecognizer", "RecognizerInfo", "create_recognizer", "list_recognizers", "recognizer_info",
    "register_recognizer",
]
