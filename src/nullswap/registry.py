"""One generic name -> object registry, behind every lookup by name in nullswap.

Recognizers, protectors, manipulators, face detectors, alignment templates and weight specs each keep one
:class:`Registry`; their public functions (``create_recognizer``, ``list_protectors``, ``get_weight_spec``, ...) are
thin wrappers around it. A registry may have a *loader*: a function importing the modules that register the built-in
entries, called once before the first lookup, so that a package can be imported without importing every model.
"""

from __future__ import annotations

import difflib
import inspect
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from nullswap.errors import DuplicateNameError, InputError, UnknownModelError

log = logging.getLogger(__name__)

T = TypeVar("T")

__all__ = ["Registry", "accepted_keywords", "check_keywords"]


class Registry(Generic[T]):
    """Named objects of one kind: ``register(name, obj)``, ``get(name)``, ``names()``.

    Args:
        kind: what the registry holds, for messages (``"recognizer"``, ``"weight file"``).
        loader: called once before the first lookup to register the built-in entries (an import); ``None`` when the
            entries are registered where the registry is defined.

    Example:
        >>> reg: Registry[int] = Registry("number")
        >>> reg.register("one", 1)
        1
        >>> reg.get("one"), reg.names()
        (1, ['one'])
    """

    def __init__(self, kind: str, loader: Callable[[], None] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._loader = loader
        self._loading = False

    def _load(self) -> None:
        if self._loader is None or self._loading:
            return
        self._loading = True  # the loader's imports register entries, which must not recurse into it
        try:
            self._loader()
        except BaseException:
            self._loading = False
            raise
        self._loader = None

    def register(self, name: str, obj: T, *, overwrite: bool = False) -> T:
        """Add ``obj`` under ``name`` and return it.

        Args:
            name: the lookup name.
            obj: the object (a factory, a spec, a template).
            overwrite: replace an entry of the same name instead of raising.

        Raises:
            InputError: ``name`` is not a non-empty string.
            DuplicateNameError: ``name`` is taken and ``overwrite`` is false.
        """
        if not isinstance(name, str) or not name:
            raise InputError(f"{self.kind} name: expected a non-empty string, got {name!r}")
        if name in self._entries and not overwrite:
            raise DuplicateNameError(self.kind, name)
        self._entries[name] = obj
        return obj

    def get(self, name: str) -> T:
        """The object registered under ``name``.

        Raises:
            UnknownModelError: ``name`` is not registered; the message lists the known names.
        """
        self._load()
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownModelError(self.kind, name, list(self._entries)) from None

    def names(self) -> list[str]:
        """The registered names, sorted."""
        self._load()
        return sorted(self._entries)

    def items(self) -> list[tuple[str, T]]:
        """``(name, object)`` pairs, sorted by name."""
        self._load()
        return [(n, self._entries[n]) for n in sorted(self._entries)]

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._load()
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} entries)"


def accepted_keywords(fn: Callable[..., Any]) -> tuple[list[str], bool]:
    """The keyword arguments ``fn`` names, and whether it forwards others.

    A ``**kwargs`` whose name starts with ``_`` (``**_``) swallows arguments rather than forwarding them, so it does
    not count as forwarding: unknown names passed to such a factory are misspellings.

    Returns:
        ``(names, open)``: the named parameters (without ``self``), and ``True`` when a ``**kwargs`` forwards the
        rest to code that checks them itself.
    """
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: accept anything
        return [], True
    names = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"]
    forwards = any(p.kind is p.VAR_KEYWORD and not p.name.startswith("_") for p in params)
    return names, forwards


def check_keywords(kind: str, name: str, fn: Callable[..., Any], kwargs: Mapping[str, object]) -> None:
    """Raise when ``kwargs`` holds a keyword that ``fn`` neither names nor forwards.

    Args:
        kind: what is being built, for the message (``"protector"``).
        name: its registry name.
        fn: the factory (or class) the keywords go to.
        kwargs: the keyword arguments a caller passed.

    Raises:
        InputError: naming the unknown keyword, the closest accepted one and every accepted one.
    """
    accepted, forwards = accepted_keywords(fn)
    if forwards:
        return
    unknown = [k for k in kwargs if k not in accepted]
    if not unknown:
        return
    bad = unknown[0]
    close = difflib.get_close_matches(bad, accepted, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise InputError(
        f"{kind} {name!r}: expected keyword arguments among {sorted(accepted) or '(none)'}, got unknown "
        f"{', '.join(repr(k) for k in unknown)}{hint}"
    )
