"""Writing a file atomically, as ``open(path, "wb")`` would leave it.

The bytes go to a temporary file beside the target, which then replaces it in one step, so a
crash never leaves half a file. Otherwise the result is what ``open(path, "wb")`` gives: a new
file's mode comes from the umask (the temporary is created by ``os.open`` with mode ``0o666``,
which the system masks), an existing file keeps its mode, and a symbolic link is followed (its
target is written; the link stays). Errors name the user's path, never the temporary's.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Callable
from typing import BinaryIO


def write_atomically(path: str, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write`` on a binary file that then becomes ``path`` (see the module docstring)."""
    target = os.path.realpath(path)  # a link's target is what open() would write
    directory, name = os.path.split(target)
    temporary = os.path.join(directory, f".{name}.{secrets.token_hex(4)}.tmp")
    try:
        handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as error:
        raise _naming(error, path) from None
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        _keep_mode(target, temporary)
        os.replace(temporary, target)
    except BaseException as error:
        os.unlink(temporary)
        if isinstance(error, OSError):
            raise _naming(error, path) from None
        raise


def _keep_mode(target: str, temporary: str) -> None:
    """Give ``temporary`` the permission bits of an existing ``target`` (as writing it in
    place keeps them)."""
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        return
    os.chmod(temporary, mode)


def _naming(error: OSError, path: str) -> OSError:
    """``error`` (same class and errno) about ``path``, as ``open(path)`` would raise it."""
    if error.errno is None:
        return type(error)(f"{path}: {error}")
    return type(error)(error.errno, error.strerror, path)
