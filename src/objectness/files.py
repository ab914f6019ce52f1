"""Atomic writes: a crash or an error leaves a file's old content or its new, never half.

Everything the package writes (checkpoints, weights, images, videos, tables,
reports) goes to a temporary file beside its destination and is renamed over
it once complete. New files get the usual permissions (0666 less the umask).
"""
import json
import os
import tempfile
from pathlib import Path

_UMASK = os.umask(0)
os.umask(_UMASK)


def temporary_beside(path: Path) -> Path:
    """A new empty file in ``path``'s folder (made if needed), with the same suffix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    return Path(temporary)


def publish(temporary: Path, path: Path) -> None:
    """Give ``temporary`` the permissions of a new file and rename it to ``path``."""
    os.chmod(temporary, 0o666 & ~_UMASK)
    os.replace(temporary, path)


def atomic_write(path, write) -> None:
    """``write(temporary_path)``, then rename the temporary file over ``path``.

    The temporary file has ``path``'s suffix, so writers that infer the format
    from the name (PIL, matplotlib) write the right one. On any error it is
    removed and ``path`` is untouched; an OSError names ``path``.
    """
    path = Path(path)
    temporary = temporary_beside(path)
    try:
        write(temporary)
        publish(temporary, path)
    except OSError as err:  # name the destination, not the temporary file (a full disk, a read-only folder)
        raise OSError(err.errno, err.strerror or str(err), str(path)) from None
    finally:
        temporary.unlink(missing_ok=True)


def write_bytes(path, data: bytes) -> None:
    atomic_write(path, lambda temporary: temporary.write_bytes(data))


def write_text(path, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path, data) -> None:
    """``data`` as indented JSON with a final newline."""
    write_text(path, json.dumps(data, indent=2) + "\n")


def distinct_names(names) -> list:
    """``names`` made distinct, in order: a second ``x`` becomes ``x-2``, a third ``x-3``, so that
    inputs of one name (a/x.png, b/x.png) never write over each other's outputs."""
    taken, out = set(), []
    for name in names:
        candidate, n = name, 1
        while candidate in taken:
            n += 1
            candidate = f"{name}-{n}"
        taken.add(candidate)
        out.append(candidate)
    return out


def check_output_folder(folder, overwrite: bool) -> None:
    """Refuse, before any work, an output folder that holds something, unless ``overwrite``."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"output folder {folder} is a file")
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise FileExistsError(f"output folder {folder} exists and is not empty; pass --overwrite to replace "
                              "its files, or choose another folder")
