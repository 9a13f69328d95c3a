"""A least-recently-used cache bounded in bytes rather than in entries.

An entry count bounds nothing when entries range from a few bytes to gigabytes (index maps of
a padded axis, DFT matrices); this cache keeps the most recently used values while their total
``nbytes`` stays under a limit, and does not keep a value larger than a quarter of it at all.
Thread-safe: the NumPy backend's worker threads share it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, Protocol, TypeVar


class _Sized(Protocol):
    @property
    def nbytes(self) -> int: ...


V = TypeVar("V", bound=_Sized)


class ByteBoundedCache(Generic[V]):
    """``get(key, make)``: the kept value of ``key``, else ``make()``, kept when small enough."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._values: OrderedDict[Hashable, V] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        """Bytes held now."""
        return self._bytes

    def get(self, key: Hashable, make: Callable[[], V]) -> V:
        with self._lock:
            value = self._values.get(key)
            if value is not None:
                self._values.move_to_end(key)
                return value
        value = make()  # outside the lock: other threads need not wait for it
        size = value.nbytes
        if size > self.max_bytes // 4:
            return value
        with self._lock:
            if key not in self._values:
                self._values[key] = value
                self._bytes += size
                while self._bytes > self.max_bytes:
                    _, dropped = self._values.popitem(last=False)
                    self._bytes -= dropped.nbytes
        return value

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
            self._bytes = 0
