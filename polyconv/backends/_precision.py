"""A backend's float32 precision setting: a process-wide default with a scoped override.

The JAX and PyTorch backends compute float32 in true float32 by default ("highest"), because
GPUs and TPUs otherwise round float32 products to TF32 or bfloat16 without saying so. Each
backend exposes ``set_precision``, ``precision`` (a ``with`` block) and ``get_precision`` built on
one :class:`PrecisionSetting`.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator


class PrecisionSetting:
    """One backend's precision choice; the innermost ``scoped`` block wins over ``set``."""

    def __init__(self, backend: str, choices: tuple[str, ...], default: str) -> None:
        self.backend = backend
        self.choices = choices
        self._default = self._checked(default)
        self._scoped: contextvars.ContextVar[str | None] = contextvars.ContextVar(
            f"polyconv_{backend}_precision", default=None
        )

    def _checked(self, value: object) -> str:
        if value not in self.choices:
            raise ValueError(
                f"precision for the {self.backend} backend must be one of {self.choices}, "
                f"got {value!r}"
            )
        return str(value)

    def get(self) -> str:
        scoped = self._scoped.get()
        return self._default if scoped is None else scoped

    def set(self, value: str) -> None:
        self._default = self._checked(value)

    @contextlib.contextmanager
    def scoped(self, value: str) -> Iterator[None]:
        token = self._scoped.set(self._checked(value))
        try:
            yield
        finally:
            self._scoped.reset(token)
