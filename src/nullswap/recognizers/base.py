"""The :class:`FaceRecognizer` interface shared by every recognizer in the zoo."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from nullswap.checks import check_image_batch
from nullswap.errors import InputError


@dataclass(frozen=True)
class RecognizerInfo:
    """What a recognizer expects and where its weights come from.

    Attributes:
        name: registry key, e.g. ``"dlib-resnet29"``.
        embedding_dim: length of the embedding.
        input_size: (height, width) of the aligned crop the network takes.
        template: name of the alignment template in :mod:`nullswap.faces.templates` the crop is aligned to.
        normalization: human-readable description of the input normalisation the module applies itself.
        weights: hub weight-spec names the model loads (empty for user-supplied files).
        offline: whether the weights are obtainable here (shipped in ``../shared`` or a package registry).
        description: one line.
        provenance: model origin and training data.
        paper: the citation of the architecture.
    """

    name: str
    embedding_dim: int
    input_size: tuple[int, int]
    template: str
    normalization: str
    weights: tuple[str, ...] = field(default_factory=tuple)
    offline: bool = True
    description: str = ""
    provenance: str = ""
    paper: str = ""


class FaceRecognizer(nn.Module):
    """A differentiable face recognizer.

    Input: aligned RGB float ``(B, 3, H, W)`` in ``[0, 1]`` in the recognizer's own template and size
    (``info.template``, ``info.input_size``). The module does its own normalisation and returns L2-normalised
    embeddings ``(B, info.embedding_dim)``; gradients flow to the input.

    Subclasses implement :meth:`embed` on the ``[0, 1]`` input (normalisation included) and return raw embeddings.
    """

    info: RecognizerInfo

    def __init__(self, info: RecognizerInfo) -> None:
        super().__init__()
        self.info = info

    @property
    def name(self) -> str:
        """Registry name."""
        return self.info.name

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) of the expected aligned crop."""
        return self.info.input_size

    @property
    def template(self) -> str:
        """Alignment template name."""
        return self.info.template

    @property
    def embedding_dim(self) -> int:
        """Embedding length."""
        return self.info.embedding_dim

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Raw (un-normalised) embeddings of ``x`` in ``[0, 1]``, shape ``(B, D)``."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """L2-normalised embeddings of aligned crops ``x`` (RGB, ``[0, 1]``, ``(B, 3, *input_size)``)."""
        check_image_batch(x, f"{self.name} input", check_range=False)
        if tuple(x.shape[-2:]) != tuple(self.input_size):
            raise InputError(
                f"{self.name}: expected aligned crops of size {tuple(self.input_size)} (template {self.template!r}), "
                f"got {tuple(x.shape[-2:])}; align with nullswap.faces.alignment first"
            )
        e = self.embed(x)
        return F.normalize(e.flatten(1).float(), dim=1)
