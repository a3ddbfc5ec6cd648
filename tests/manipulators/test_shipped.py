"""The shipped trained manipulators on held-out CelebA identities (needs ../shared/data/celeba)."""

import pytest
import torch

from nullswap.manipulators import create_manipulator
from nullswap.manipulators.checkpoint import ASSETS_DIR
from nullswap.metrics.quality import psnr
from tests.conftest import need_shared

# Measured floors (docs/manipulators.md reports the full held-out numbers); a few dB below the measured means.
AE_PSNR_FLOOR = 19.0
SWAPPER_SELF_PSNR_FLOOR = 17.0


def _shipped(name: str) -> None:
    # a committed asset: a missing file is a failure, never a skip
    assert (ASSETS_DIR / name / "model.safetensors").is_file(), f"nullswap/assets/manipulators/{name} is missing"


@pytest.fixture(scope="module")
def heldout(shared):
    from nullswap.datasets.faces import AlignedFaces, identity_disjoint_split, scan_faces

    root = shared / "data" / "celeba"
    if not root.is_dir():
        need_shared("../shared/data/celeba")
    parts = identity_disjoint_split(scan_faces(root), (0.8, 0.1, 0.1), seed=0)
    recs = parts["test"][::60][:6]  # a few held-out identities (the training split never saw them)
    return AlignedFaces(recs, template="protector-128").tensor()


@pytest.mark.shared
def test_shipped_autoencoder_reconstructs(heldout):
    _shipped("surrogate-ae")
    m = create_manipulator("surrogate-ae")
    assert not m.training and not any(p.requires_grad for p in m.parameters())
    with torch.no_grad():
        y = m(heldout)
    assert float(psnr(y, heldout).mean()) > AE_PSNR_FLOOR


@pytest.mark.shared
def test_shipped_swapper_reconstructs_and_swaps(heldout):
    _shipped("swapper-celeba")
    sw = create_manipulator("swapper-celeba")
    assert not sw.training
    with torch.no_grad():
        self_swap = sw.swap(heldout, heldout)
        other = sw.swap(heldout, heldout.roll(1, 0))
    assert float(psnr(self_swap, heldout).mean()) > SWAPPER_SELF_PSNR_FLOOR
    assert not torch.allclose(self_swap, other)  # the injected identity changes the output
