"""Reading .npz files that come from outside: no pickle, no inflation, no allocation beyond the file.

``np.load(allow_pickle=False)`` refuses object arrays, but it trusts the shape in each
member's header and inflates compressed members: a 1 MB file can claim, and then fill,
gigabytes. The files read here (statistics, model weights) are written by ``np.savez``,
which stores members uncompressed. So anything else is refused before a byte of array data
is allocated: every member must be stored, must hold a numeric ``.npy`` array, and its
header's shape times item size must equal the member's size, which cannot exceed the file's.
"""

from __future__ import annotations

import math
import os
import struct
import zipfile
from pathlib import Path

import numpy as np

_NUMERIC_KINDS = "biuf"  # bool, signed, unsigned, float: nothing that needs an interpreter
_MAX_HEADER = 10_000


class NpzFormatError(ValueError):
    """The file is not an uncompressed .npz of plain numeric arrays (or is truncated)."""


def read_npz(path: str | os.PathLike, names: set[str] | None = None) -> dict[str, np.ndarray]:
    """Arrays of an uncompressed .npz, by name; ``names``: the exact set of arrays expected.

    Raises FileNotFoundError when the file is missing, NpzFormatError for anything else
    wrong with it. Allocates at most the file's size (plus headers).
    """
    path = Path(path)
    try:
        file_size = path.stat().st_size
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            found = [i.filename for i in infos]
            if len(set(found)) != len(found) or not all(n.endswith(".npy") for n in found):
                raise NpzFormatError(f"{path}: members {found[:8]} are not distinct .npy arrays")
            keys = {n[: -len(".npy")] for n in found}
            if names is not None and keys != names:
                raise NpzFormatError(f"{path}: expected arrays {sorted(names)}, found {sorted(keys)}")
            return {info.filename[: -len(".npy")]: _read_member(path, zf, info, file_size)
                    for info in infos}
    except FileNotFoundError:
        raise
    except NpzFormatError:
        raise
    except (OSError, EOFError, ValueError, KeyError, NotImplementedError, RuntimeError,
            struct.error, OverflowError, RecursionError, zipfile.BadZipFile,
            zipfile.LargeZipFile) as exc:  # zipfile raises RuntimeError for some bad archives
        raise NpzFormatError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})") from None


def _read_member(path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, file_size: int) -> np.ndarray:
    where = f"{path}: {info.filename}"
    if info.flag_bits & 0x1:
        raise NpzFormatError(f"{where}: encrypted members are refused")
    if info.compress_type != zipfile.ZIP_STORED:
        raise NpzFormatError(f"{where}: compressed members are refused (np.savez stores them)")
    if info.file_size > file_size or info.compress_size != info.file_size:
        raise NpzFormatError(f"{where}: member size {info.file_size} does not fit the file")
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f, _MAX_HEADER)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f, _MAX_HEADER)
        else:
            raise NpzFormatError(f"{where}: .npy format version {version} is not supported")
        if dtype.kind not in _NUMERIC_KINDS or dtype.hasobject or dtype.fields is not None \
                or dtype.subdtype is not None:
            raise NpzFormatError(f"{where}: dtype {dtype} is not a plain numeric type")
        if any(d < 0 for d in shape):
            raise NpzFormatError(f"{where}: negative dimension in shape {shape}")
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes != info.file_size - f.tell():
            raise NpzFormatError(f"{where}: header claims {nbytes} bytes of data, the member holds "
                                 f"{info.file_size - f.tell()}")
        buf = bytearray(nbytes)
        if f.readinto(buf) != nbytes or f.read(1):  # reading to the end also checks the CRC
            raise NpzFormatError(f"{where}: truncated array data")
    return np.frombuffer(buf, dtype=dtype).reshape(shape, order="F" if fortran else "C")
