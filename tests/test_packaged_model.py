"""The NullSwap checkpoint shipped inside the package: hub-verified, loadable, and honest about its default use."""

from __future__ import annotations

import json

import torch

from nullswap.hub import get_weight_spec, verify
from nullswap.protection import default_method, packaged_checkpoint
from nullswap.protectors import create_protector


def test_packaged_checkpoint_verifies_and_loads():
    folder = packaged_checkpoint()
    assert folder is not None, "the package ships nullswap/assets/nullswap-default"
    assert verify(get_weight_spec("nullswap-default")).status == "ok"  # sha256 in the hub
    prot = create_protector("nullswap")
    assert prot.template == "protector-128" and prot.psnr_floor == 36.0
    x = torch.rand(2, 3, 128, 128)
    y = prot.protect(x, generator=torch.Generator().manual_seed(0))
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    mse = (y - x).pow(2).mean((1, 2, 3))
    assert bool((10 * torch.log10(1 / mse) >= 36.0 - 1e-3).all())  # the inference guard holds
    meta = json.loads((folder / "config.json").read_text())["meta"]
    assert default_method() == ("nullswap" if meta.get("default_ok") is True else "pgd")
