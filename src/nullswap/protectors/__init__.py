"""Face protectors (NullSwap, PGD/FGSM, ID-Guard, ARS, retentive) behind one :class:`Protector` interface."""

from nullswap.protectors.base import (
    IdentityProtector,
    Protector,
    create_protector,
    list_protectors,
    protector_description,
    register_protector,
)

__all__ = [
    "IdentityProtector",
    "Protector",
    "create_protector",
    "list_protectors",
    "protector_description",
    "register_protector",
]
