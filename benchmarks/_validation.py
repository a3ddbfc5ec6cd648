"""The CelebA validation crops the training configs hold out, for the benchmarks that look at single crops.

The identity-disjoint split of the training configs (0.8 / 0.1 / 0.1 of the identities, seed 0), MTCNN, template
``protector-128``: the crops the training runs' own evaluation uses.
"""

from __future__ import annotations

import torch

from nullswap.datasets.faces import AlignedFaces, identity_disjoint_split, scan_faces


def validation_crops(data: str, n: int) -> torch.Tensor:
    """The first ``n`` validation crops of the CelebA identity folders at ``data``, ``(n, 3, 128, 128)`` in [0, 1]."""
    recs = scan_faces(data, "identity-folders")
    val = identity_disjoint_split(recs, (0.8, 0.1, 0.1), seed=0)["val"]
    faces = AlignedFaces(val, template="protector-128", detector="mtcnn")
    return torch.stack([faces[i][0] for i in range(min(n, len(faces)))])
