"""Training checkpoints: tensors in safetensors, everything else in JSON, the resolved config in YAML.

A checkpoint folder holds

- ``state.safetensors``: model parameters/buffers (``model.<name>.<key>``), optimiser tensors
  (``optim.<name>.<param index>.<slot>``) and RNG states (``rng.torch``, ``rng.cuda.<i>``);
- ``state.json``: epoch/step counters, optimiser hyper-parameters (param groups) and scalar slots, the recipe's extra
  state (e.g. Dynamic Loss Weighting histories), Python and NumPy RNG states;
- ``config.yaml``: the resolved training config.

Nothing is pickled, so loading a checkpoint cannot run code.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from nullswap.errors import WeightsError
from nullswap.train.config import dump_config


def _flatten_optimizer(name: str, sd: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for idx, slots in sd["state"].items():
        for k, v in slots.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim.{name}.{idx}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _unflatten_optimizer(name: str, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    prefix = f"optim.{name}."
    for key, v in tensors.items():
        if key.startswith(prefix):
            idx, slot = key[len(prefix) :].split(".", 1)
            state.setdefault(int(idx), {})[slot] = v
    for key, v in meta["scalars"].items():
        idx, slot = key.split(".", 1)
        state.setdefault(int(idx), {})[slot] = v
    return {"state": state, "param_groups": meta["param_groups"]}


def _rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    np_state = np.random.get_state()
    meta = {
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    return tensors, meta


def _set_rng_state(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k.rsplit(".", 1)[1]))
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda])
    py = meta["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = meta["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))


def save_training_state(
    folder: str | Path,
    models: Mapping[str, torch.nn.Module],
    optimizers: Mapping[str, torch.optim.Optimizer],
    counters: Mapping[str, int],
    extra: Mapping[str, Any],
    config: Mapping[str, Any],
) -> Path:
    """Write a resumable checkpoint folder (atomically: a ``.part`` folder renamed at the end)."""
    folder = Path(folder)
    part = folder.with_name(folder.name + ".part")
    part.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, Any] = {"counters": dict(counters), "extra": dict(extra), "optimizers": {}}
    for name, m in models.items():
        for k, v in m.state_dict().items():
            tensors[f"model.{name}.{k}"] = v.detach().cpu().contiguous()
    for name, opt in optimizers.items():
        t, m = _flatten_optimizer(name, opt.state_dict())
        tensors.update(t)
        meta["optimizers"][name] = m
    rt, rm = _rng_state()
    tensors.update(rt)
    meta["rng"] = rm
    save_file(tensors, str(part / "state.safetensors"))
    (part / "state.json").write_text(json.dumps(meta))
    dump_config(config, part / "config.yaml")
    if folder.exists():
        for f in folder.iterdir():
            f.unlink()
        folder.rmdir()
    part.replace(folder)
    return folder


def load_training_state(
    folder: str | Path,
    models: Mapping[str, torch.nn.Module],
    optimizers: Mapping[str, torch.optim.Optimizer],
    restore_rng: bool = True,
) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_training_state` into ``models``/``optimizers`` (strict keys).

    Returns:
        ``{"counters": ..., "extra": ...}``.

    Raises:
        WeightsError: missing files or keys that do not match the models.
    """
    folder = Path(folder)
    st, js = folder / "state.safetensors", folder / "state.json"
    if not st.is_file() or not js.is_file():
        raise WeightsError(f"checkpoint {str(folder)!r}: expected state.safetensors and state.json, not found")
    tensors = load_file(str(st))
    meta = json.loads(js.read_text())
    for name, m in models.items():
        prefix = f"model.{name}."
        sd = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        try:
            m.load_state_dict(sd, strict=True)
        except RuntimeError as e:
            raise WeightsError(f"checkpoint {str(folder)!r}: model {name!r} does not match: {e}") from e
    for name, opt in optimizers.items():
        if name not in meta["optimizers"]:
            raise WeightsError(f"checkpoint {str(folder)!r}: no optimiser state for {name!r}")
        opt.load_state_dict(_unflatten_optimizer(name, tensors, meta["optimizers"][name]))
    if restore_rng:
        _set_rng_state(tensors, meta["rng"])
    return {"counters": meta["counters"], "extra": meta["extra"]}


__all__ = ["load_training_state", "save_training_state"]
