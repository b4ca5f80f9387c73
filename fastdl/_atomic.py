"""Writing a file so that it is never lost: the whole new file or the old one.

Every file fastdl writes (a model, a plot, a benchmark's JSON) goes through
``write_atomic``: the bytes go to a temporary file in the target's folder, are
flushed to the disk, and the temporary then replaces the target in one rename.  A
failure (disk full, an exception, Ctrl-C) or a kill at any moment leaves the old file
as it was.  On Linux the temporary is unnamed (``O_TMPFILE``) until the write is
complete, so a killed process leaves nothing behind; elsewhere it is a
``.fastdl-*.tmp`` file that a later write into the same folder removes once it is 15
minutes old.  A replaced file keeps its permission bits, and a symbolic link is written
through (the file it names is replaced), as ``open`` would.

``check_target`` refuses, before any work, what cannot be replaced that way: an empty
path, a path naming a folder or ending in a separator, and an existing target that is
not a regular file (a device such as ``/dev/null``, a FIFO, a socket), which the
rename would replace (as root, ``/dev/null`` itself).
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import stat
import time

TMP_NAME = re.compile(r"\.fastdl-[A-Za-z0-9_]{8,32}\.tmp")
STALE_TMP_SECONDS = 15 * 60


def check_target(name: str, path) -> str:
    """``path`` as a str, or ValueError naming ``name`` when it cannot be written
    atomically (see the module docstring); a missing folder is left to the write
    (OSError), as ``open`` does."""
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    path = os.fspath(path)
    if not path:
        raise ValueError(f"{name}: expected a file name, got ''")
    if path.endswith(os.sep) or (os.altsep and path.endswith(os.altsep)) or \
            os.path.basename(path) in (".", ".."):
        raise ValueError(f"{name}: {path!r} names a folder, expected a file name")
    try:
        st = os.stat(path)
    except OSError:
        return path  # absent (or unreachable: the write says why)
    if stat.S_ISDIR(st.st_mode):
        raise ValueError(f"{name}: {path!r} is a folder, expected a file name")
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{name}: {path!r} is not a regular file (a device, FIFO or "
                         "socket); writing would replace it")
    return path


def write_atomic(path, write, *, name="path") -> str:
    """Call ``write(fh)`` with a binary file whose bytes then replace ``path`` at
    once; returns ``path`` as a str.  ``check_target`` first (ValueError); OSError
    names ``path``, not the temporary file."""
    path = check_target(name, path)
    # a symbolic link: the file it names is replaced (the link kept), as open() writes
    # through it; an existing file keeps its permission bits (a private 0600 model
    # became world-readable)
    target = os.path.realpath(path) if os.path.islink(path) else path
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        mode = None
    folder = os.path.dirname(os.path.abspath(target))
    fd, tmp = _open_temporary(folder, path)
    try:
        with os.fdopen(fd, "w+b") as fh:
            write(fh)
            fh.flush()
            if mode is not None and hasattr(os, "fchmod"):
                os.fchmod(fh.fileno(), mode)
            os.fsync(fh.fileno())
            if tmp is None:  # unnamed: give it a name only now, for the rename
                tmp = _name_unnamed(fh, folder, mode)
        os.replace(tmp, target)
    except OSError as e:
        _discard(tmp)
        raise type(e)(e.errno, e.strerror, path) from None  # not the temporary
    except BaseException:
        _discard(tmp)
        raise
    return path


def _name_unnamed(fh, folder, mode=None):
    """Link the O_TMPFILE file ``fh`` into ``folder`` under a temporary name.  linkat
    through /proc/self/fd with AT_SYMLINK_FOLLOW (os.link calls linkat only when given a
    dir_fd; plain link() fails there with EXDEV); where that is refused, a named copy."""
    name = _temporary_name()
    tmp = os.path.join(folder, name)
    dfd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.link(f"/proc/self/fd/{fh.fileno()}", name, dst_dir_fd=dfd, follow_symlinks=True)
        return tmp
    except OSError:
        pass
    finally:
        os.close(dfd)
    fh.seek(0)
    out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        if mode is not None and hasattr(os, "fchmod"):
            os.fchmod(out, mode)
        with os.fdopen(out, "wb") as dst:
            shutil.copyfileobj(fh, dst)
            dst.flush()
            os.fsync(dst.fileno())
    except BaseException:
        _discard(tmp)
        raise
    return tmp


def _open_temporary(folder, path):
    """(fd, temporary name or None when unnamed) in ``folder``.  os.open with 0o666
    lets the user's umask decide the mode, as open() would (mkstemp makes 0600)."""
    flags = os.O_RDWR | getattr(os, "O_BINARY", 0)
    remove_stale_temporaries(folder)
    if hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd"):
        try:
            return os.open(folder, flags | os.O_TMPFILE, 0o666), None
        except OSError:
            pass  # a file system without it (EOPNOTSUPP, EISDIR): a named one
    tmp = os.path.join(folder, _temporary_name())
    try:
        return os.open(tmp, flags | os.O_CREAT | os.O_EXCL, 0o666), tmp
    except OSError as e:
        raise type(e)(e.errno, e.strerror, path) from None  # not the temporary


def _temporary_name():
    # what TMP_NAME matches, so that remove_stale_temporaries finds what a kill left
    return f".fastdl-{secrets.token_hex(8)}.tmp"


def _discard(tmp):
    if tmp is not None:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def remove_stale_temporaries(folder):
    """Remove fastdl's own temporaries that a killed write left in ``folder``: regular
    files named as ``write_atomic`` names them, owned by this user, untouched for 15
    minutes (a write running in another process touches its file far more recently)."""
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    uid = getattr(os, "getuid", lambda: None)()
    for e in entries:
        if not TMP_NAME.fullmatch(e.name):
            continue
        try:
            st = e.stat(follow_symlinks=False)
            if stat.S_ISREG(st.st_mode) and now - st.st_mtime > STALE_TMP_SECONDS and \
                    (uid is None or st.st_uid == uid):
                os.unlink(e.path)
        except OSError:
            pass


def save_figure(fig, path, *, name="path", **savefig_kwargs) -> str:
    """``fig.savefig`` through ``write_atomic``: the format from the file name's
    extension (matplotlib's default, PNG, without one)."""
    path = check_target(name, path)
    ext = os.path.splitext(path)[1].lower().lstrip(".") or None
    return write_atomic(path, lambda fh: fig.savefig(fh, format=ext, **savefig_kwargs),
                        name=name)
