"""Imports every built-in protector module so their factories register themselves."""

import nullswap.protectors.ars  # noqa: F401
import nullswap.protectors.idguard  # noqa: F401
import nullswap.protectors.nullswap  # noqa: F401
import nullswap.protectors.pgd  # noqa: F401
import nullswap.protectors.retentive  # noqa: F401
from nullswap.protectors import base  # noqa: F401
