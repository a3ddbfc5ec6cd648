"""Named 5-point alignment templates.

Landmark order everywhere in nullswap (image coordinates, x then y): left eye, right eye (as seen in the image), nose
tip, left mouth corner, right mouth corner. This is MTCNN's and YuNet's order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nullswap.registry import Registry

# insightface's ArcFace 112x112 reference points (the de-facto standard template).
_ARCFACE_112 = (
    (38.2946, 51.6963),
    (73.5318, 51.5014),
    (56.0252, 71.7366),
    (41.5493, 92.3655),
    (70.7299, 92.2041),
)


@dataclass(frozen=True)
class AlignmentTemplate:
    """Where the 5 landmarks land in an aligned crop of ``size`` = (height, width) pixels.

    Attributes:
        name: registry key.
        size: (height, width) of the crop.
        points: 5 (x, y) reference points in crop pixel coordinates (pixel centres at integers).
        description: provenance of the points.
    """

    name: str
    size: tuple[int, int]
    points: tuple[tuple[float, float], ...]
    description: str = ""

    def points_tensor(self, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None):
        """The points as a ``(5, 2)`` tensor."""
        return torch.tensor(self.points, dtype=dtype, device=device)


def _scaled(points, scale: float, src_center: tuple[float, float], dst_center: tuple[float, float]):
    return tuple(
        (round((x - src_center[0]) * scale + dst_center[0], 4), round((y - src_center[1]) * scale + dst_center[1], 4))
        for x, y in points
    )


#: Alignment templates by name.
TEMPLATES: Registry[AlignmentTemplate] = Registry("alignment template")


def register_template(t: AlignmentTemplate) -> AlignmentTemplate:
    """Add a template to the registry.

    Raises:
        DuplicateNameError: a template of that name is already registered.
    """
    return TEMPLATES.register(t.name, t)


def get_template(name: str | AlignmentTemplate) -> AlignmentTemplate:
    """Look up a template by name (a template passes through).

    Raises:
        UnknownModelError: listing the known names.
    """
    if isinstance(name, AlignmentTemplate):
        return name
    return TEMPLATES.get(name)


def list_templates() -> list[str]:
    """Names of all registered templates."""
    return TEMPLATES.names()


ARCFACE_112 = register_template(
    AlignmentTemplate("arcface-112", (112, 112), _ARCFACE_112, "insightface ArcFace 112x112 reference points")
)
ARCFACE_112x96 = register_template(
    AlignmentTemplate(
        "arcface-112x96",
        (112, 96),
        tuple((x - 8.0, y) for x, y in _ARCFACE_112),
        "ArcFace points shifted 8 px left: the 112x96 crop of SphereFace/MobileFaceNet(CASIA) training",
    )
)
# dlib's get_face_chip_details(shape, 150, 0.25) aligns 32 of the 68 points to its mean face; the 5 points below are
# that mean face's eye centres (mean of points 36-41 / 42-47), nose tip (30) and mouth corners (48, 54) mapped to the
# 150 px chip with padding 0.25: p = (0.25 + m) / 1.5 * 150. Choice: with only 5 landmarks we fit these 5 points.
DLIB_150 = register_template(
    AlignmentTemplate(
        "dlib-150",
        (150, 150),
        ((47.5492, 46.5990), (100.4761, 46.5990), (74.0127, 76.5625), (50.4149, 103.0233), (97.6104, 103.0233)),
        "dlib 150x150 face chip (padding 0.25), 5 points derived from dlib's 68-point mean face",
    )
)
# The protectors' 256x256 crop. Not specified by the papers (NullSwap trains on 256x256 CelebA-HQ). Choice: the ArcFace
# template scaled by 1.9 about its eyes-mouth centre, placed at (128, 136): eye distance 67 px, the whole face with
# forehead and chin inside, and every recognizer's crop (ArcFace 112 -> 213 px, dlib 150 chip -> 190 px) inside it.
PROTECTOR_256 = register_template(
    AlignmentTemplate(
        "protector-256",
        (256, 256),
        _scaled(_ARCFACE_112, 1.9, (56.0, 72.0), (128.0, 136.0)),
        "nullswap's 256x256 protector crop: ArcFace points x1.9 centred at (128,136)",
    )
)
# The same crop at half resolution, for the small CPU configuration (configs/nullswap-cpu-small.yaml).
PROTECTOR_128 = register_template(
    AlignmentTemplate(
        "protector-128",
        (128, 128),
        tuple((round(x * 0.5 - 0.25, 4), round(y * 0.5 - 0.25, 4)) for x, y in PROTECTOR_256.points),  # pixel centres
        "protector-256 scaled by 0.5 (the CPU-small protector crop)",
    )
)
