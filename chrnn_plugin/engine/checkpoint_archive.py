"""Read a ``torch.save`` file: the zip archive or the legacy stream, storages checked first.

Both formats ``torch.save`` writes are read here, with the pickle run by
:class:`.restricted_unpickler.DataUnpickler` and its objects made by
:class:`.checkpoint_builders.CheckpointBuilders`:

* **zip** (torch >= 1.6): read with Python's :mod:`zipfile`, so every record is
  checked against its CRC-32. Entries must be stored uncompressed, as
  ``torch.save`` writes them (a compressed ``data.pkl`` is how a few kilobytes
  inflate to gigabytes), must not overlap, and a storage's record must hold
  exactly the bytes its persistent id declares.
* **legacy** (``_use_new_zipfile_serialization=False``): five pickles, then the
  raw storages. A storage is allocated only once the bytes left in the file can
  hold it (and every storage before it), and every one must then be filled.

The pre-0.4 tar format cannot be read this way and is refused.
"""

import io
import re
import sys
import tarfile
import zipfile
from typing import Any, BinaryIO

import torch

from .checkpoint_builders import CheckpointBuilders, StorageSource, StorageType, check_data
from .checkpoint_errors import (
    CheckpointDeviceError,
    CorruptCheckpointError,
    IncompleteCheckpointError,
    NotACheckpointError,
    UnsafeCheckpointError,
)
from .restricted_unpickler import Damaged, DataUnpickler, Refused, Truncated, short_repr

__all__ = ['read_checkpoint']

ZIP_MAGIC = b'PK\x03\x04'
# torch.serialization writes this number, then protocol version 1001, in the legacy format.
LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001
_STORAGE_KEY = re.compile(r'[A-Za-z0-9_.]{1,64}')
_CHUNK = 1 << 24


def _element_size(storage_type: StorageType) -> int:
    return torch._utils._element_size(storage_type.dtype)


def _check_key(key: Any) -> None:
    if type(key) is not str or not _STORAGE_KEY.fullmatch(key):
        raise Damaged(f'a storage key {short_repr(key)}')


def _check_count(value: Any, what: str) -> None:
    if type(value) is not int or value < 0:
        raise Damaged(f'{what} {short_repr(value)}')


class _Storages(StorageSource):
    """What both formats share: checking persistent ids and placing storages on devices."""

    def __init__(self, name: str, map_location: Any):
        self._name = name
        self._restore = torch.serialization._get_restore_location(map_location)

    def storage(self, pid: tuple) -> torch.storage.TypedStorage:
        raise Damaged('a storage in a pickle that holds none')

    @staticmethod
    def _check_common(key: Any, location: Any, numel: Any) -> None:
        _check_key(key)
        if type(location) is not str or len(location) > 64:
            raise Damaged(f'a storage location {short_repr(location)}')
        _check_count(numel, 'a storage size')

    def _place(self, storage: torch.UntypedStorage, location: str) -> torch.UntypedStorage:
        try:
            return self._restore(storage, location)
        except RuntimeError as error:
            raise CheckpointDeviceError(
                f'Checkpoint {self._name}: cannot place a storage saved on {location!r}: {error}'
            ) from None

    @staticmethod
    def _typed(storage: torch.UntypedStorage, dtype: torch.dtype) -> torch.storage.TypedStorage:
        return torch.storage.TypedStorage(wrap_storage=storage, dtype=dtype, _internal=True)


class _ZipStorages(_Storages):
    """Storages from ``<prefix>/data/<key>`` records, read on first use."""

    def __init__(self, archive: zipfile.ZipFile, prefix: str, name: str, map_location: Any):
        super().__init__(name, map_location)
        self._archive = archive
        self._prefix = prefix
        self._byteorder = 'little'
        self._loaded: dict[str, torch.UntypedStorage] = {}

    def set_byteorder(self, byteorder: str) -> None:
        self._byteorder = byteorder

    def storage(self, pid: tuple) -> torch.storage.TypedStorage:
        if len(pid) != 5:
            raise Damaged(f'a zip storage id has 5 fields, this one {len(pid)}')
        _, storage_type, key, location, numel = pid
        self._check_common(key, location, numel)
        nbytes = numel * _element_size(storage_type)
        if key not in self._loaded:
            self._loaded[key] = self._place(self._read(key, nbytes, storage_type), location)
        storage = self._loaded[key]
        if storage.nbytes() != nbytes:
            raise Damaged(f'storage {key} is used with {nbytes} and {storage.nbytes()} bytes')
        return self._typed(storage, storage_type.dtype)

    def _read(self, key: str, nbytes: int, storage_type: StorageType) -> torch.UntypedStorage:
        record = f'{self._prefix}/data/{key}'
        try:
            info = self._archive.getinfo(record)
        except KeyError:
            raise Damaged(f'its pickle refers to storage {key}, but there is no {record}') from None
        if info.file_size != nbytes:
            raise Damaged(
                f'storage {key} declares {nbytes} bytes, but its record holds {info.file_size}'
            )
        buffer = torch.empty(nbytes, dtype=torch.uint8)
        view = memoryview(buffer.numpy())
        with _zip_errors(self._name, record):
            with self._archive.open(info) as f:
                done = 0
                while done < nbytes:
                    got = f.readinto(view[done : done + _CHUNK])
                    if not got:
                        raise EOFError(f'{record} ends after {done} of {nbytes} bytes')
                    done += got
                f.read(1)  # reaching the end is what makes zipfile compare the CRC-32
        storage = buffer.untyped_storage()
        if self._byteorder != sys.byteorder:
            storage.byteswap(storage_type.dtype)
        return storage


class _zip_errors:
    """Turn zipfile's complaints about one record into our errors naming the file."""

    def __init__(self, name: str, record: str):
        self._name, self._record = name, record

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> bool:
        if kind is None or not issubclass(kind, Exception):
            return False
        if issubclass(kind, EOFError):
            raise IncompleteCheckpointError(self._name, f'{self._record}: {error}') from None
        # BadZipFile (a bad CRC-32, a bad local header), NotImplementedError, ValueError...
        raise CorruptCheckpointError(
            self._name, f'{self._record}: {type(error).__name__}: {error}'
        ) from None


class _LegacyStorages(_Storages):
    """Storages of the legacy format: allocated while unpickling, filled from the bytes after."""

    def __init__(self, name: str, map_location: Any, budget: int):
        super().__init__(name, map_location)
        # Bytes the file has left for storages; nothing is allocated beyond them.
        self._budget = budget
        self.roots: dict[str, tuple[torch.UntypedStorage, int, StorageType]] = {}
        self._views: dict[str, torch.UntypedStorage] = {}

    def storage(self, pid: tuple) -> torch.storage.TypedStorage:
        if len(pid) != 6:
            raise Damaged(f'a legacy storage id has 6 fields, this one {len(pid)}')
        _, storage_type, key, location, numel, view = pid
        self._check_common(key, location, numel)
        nbytes = numel * _element_size(storage_type)
        if key not in self.roots:
            self._budget -= nbytes + 8  # each storage is preceded by its 8-byte size
            if self._budget < 0:
                raise Truncated(
                    f'storage {key} declares {nbytes} bytes, more than the file has left '
                    '(cut short, or a wrong size)'
                )
            storage = self._place(torch.UntypedStorage(nbytes), location)
            self.roots[key] = (storage, numel, storage_type)
        root, root_numel, root_type = self.roots[key]
        if root_numel * _element_size(root_type) != nbytes:
            raise Damaged(f'storage {key} is used with two different sizes')
        if view is None:
            return self._typed(root, storage_type.dtype)
        return self._typed(self._view(root, view, storage_type), storage_type.dtype)

    def _view(
        self, root: torch.UntypedStorage, view: Any, storage_type: StorageType
    ) -> torch.UntypedStorage:
        if type(view) is not tuple or len(view) != 3:
            raise Damaged(f'a storage view {short_repr(view)}')
        view_key, offset, size = view
        _check_key(view_key)
        _check_count(offset, 'a storage view offset')
        _check_count(size, 'a storage view size')
        item = _element_size(storage_type)
        if (offset + size) * item > root.nbytes():
            raise Damaged(f'storage view {view_key} reaches past its storage')
        if view_key not in self._views:
            self._views[view_key] = root[offset * item : (offset + size) * item]
        return self._views[view_key]

    def fill(self, stream: BinaryIO, keys: Any, little_endian: bool) -> None:
        """Copy each storage's bytes (they follow the pickles, in ``keys`` order)."""
        if type(keys) is not list or sorted(map(str, keys)) != sorted(self.roots):
            raise Damaged('the list of storage keys does not match the storages the pickle uses')
        for key in keys:
            storage, numel, storage_type = self.roots[key]
            header = stream.read(8)
            if len(header) != 8:
                raise EOFError(f'the data of storage {key} is missing')
            if int.from_bytes(header, 'little', signed=True) != numel:
                raise Damaged(f'storage {key} holds another number of elements than declared')
            raw = stream.read(storage.nbytes())
            if len(raw) != storage.nbytes():
                raise EOFError(f'storage {key} ends after {len(raw)} of {storage.nbytes()} bytes')
            data = torch.UntypedStorage.from_buffer(raw, dtype=torch.uint8) if raw else None
            if data is not None:
                if little_endian != (sys.byteorder == 'little'):
                    data.byteswap(storage_type.dtype)
                storage.copy_(data)


def _unpickle(
    stream: BinaryIO, size: int, name: str, what: str, builders: CheckpointBuilders
) -> Any:
    result = DataUnpickler(stream, size, name, what, builders).load()
    try:
        check_data(result, builders)
    except Refused as error:
        raise UnsafeCheckpointError(name, f'{error} ({what})') from None
    return result


def _read_zip(stream: BinaryIO, name: str, size: int, map_location: Any) -> Any:
    try:
        archive = zipfile.ZipFile(stream)
    except zipfile.BadZipFile as error:
        if 'not a zip file' in str(error):  # no end-of-archive record: cut short
            raise IncompleteCheckpointError(
                name, f'the zip archive has no end record ({error})'
            ) from None
        raise CorruptCheckpointError(name, f'the zip archive cannot be read ({error})') from None
    except Exception as error:
        # zipfile raises what it meets: NotImplementedError for a newer zip version,
        # ValueError or EOFError for offsets outside the file, and so on.
        raise CorruptCheckpointError(
            name, f'the zip archive cannot be read ({type(error).__name__}: {error})'
        ) from None
    infos = archive.infolist()
    names = [info.filename for info in infos]
    if not infos:
        raise NotACheckpointError(name, 'the zip archive is empty')
    if len(set(names)) != len(names):
        raise CorruptCheckpointError(name, 'the zip archive holds two entries of the same name')
    prefix = names[0].split('/', 1)[0]
    if not all(n.startswith(prefix + '/') for n in names):
        raise NotACheckpointError(name, 'its zip entries are not in one top-level folder')
    for info in infos:
        if info.file_size != info.compress_size:
            raise CorruptCheckpointError(
                name, f'zip entry {info.filename} declares two different sizes'
            )
        if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
            raise CorruptCheckpointError(
                name,
                f'zip entry {info.filename} is compressed or encrypted; torch.save stores '
                'entries as they are',
            )
    if sum(info.compress_size for info in infos) > size:
        raise CorruptCheckpointError(name, 'its zip entries overlap (they hold more than the file)')
    if f'{prefix}/constants.pkl' in names:
        raise NotACheckpointError(name, 'it is a TorchScript archive (torch.jit.save)')
    if f'{prefix}/data.pkl' not in names:
        raise NotACheckpointError(name, 'the zip archive has no data.pkl')
    storages = _ZipStorages(archive, prefix, name, map_location)
    if f'{prefix}/byteorder' in names:
        with _zip_errors(name, f'{prefix}/byteorder'):
            byteorder = archive.read(f'{prefix}/byteorder')
        if byteorder not in (b'little', b'big'):
            raise CorruptCheckpointError(name, f'unknown byte order {byteorder[:20]!r}')
        storages.set_byteorder(byteorder.decode())
    with _zip_errors(name, f'{prefix}/data.pkl'):
        data = archive.read(f'{prefix}/data.pkl')
    builders = CheckpointBuilders(storages)
    return _unpickle(io.BytesIO(data), len(data), name, 'data.pkl', builders)


def _read_legacy(stream: BinaryIO, name: str, size: int, map_location: Any) -> Any:
    def left() -> int:
        return size - stream.tell()

    # The first three pickles are plain values: no global can resolve to a storage.
    plain = CheckpointBuilders(_Storages(name, map_location))
    magic = _unpickle(stream, left(), name, 'pickle 1 of the legacy format', plain)
    if magic != LEGACY_MAGIC_NUMBER:
        raise NotACheckpointError(
            name, 'it starts with neither a zip archive nor the legacy magic number'
        )
    protocol = _unpickle(stream, left(), name, 'pickle 2 of the legacy format', plain)
    if protocol != LEGACY_PROTOCOL_VERSION:
        raise CorruptCheckpointError(name, f'legacy protocol version {short_repr(protocol)}')
    sys_info = _unpickle(stream, left(), name, 'pickle 3 of the legacy format', plain)
    little_endian = sys_info.get('little_endian', True) if type(sys_info) is dict else True
    storages = _LegacyStorages(name, map_location, budget=left())
    builders = CheckpointBuilders(storages)
    result = _unpickle(stream, left(), name, 'pickle 4 of the legacy format', builders)
    keys = _unpickle(stream, left(), name, 'pickle 5 of the legacy format', plain)
    try:
        storages.fill(stream, keys, bool(little_endian))
    except Damaged as error:
        raise CorruptCheckpointError(name, str(error)) from None
    except EOFError as error:
        raise IncompleteCheckpointError(name, str(error)) from None
    return result


def _is_tar(stream: BinaryIO) -> bool:
    try:
        with tarfile.open(fileobj=stream, mode='r:'):
            return True
    except tarfile.TarError:
        return False
    finally:
        stream.seek(0)


def read_checkpoint(stream: BinaryIO, name: str, map_location: Any = None) -> Any:
    """Load the checkpoint in the seekable ``stream`` (from its start) as data only.

    Args:
        stream (BinaryIO): The file's bytes.
        name (str): How errors name the checkpoint.
        map_location: As for ``torch.load``.

    Raises:
        UnsafeCheckpointError: It holds something other than data.
        CorruptCheckpointError: Its bytes are damaged or inconsistent.
        IncompleteCheckpointError: It is empty or ends early.
        NotACheckpointError: ``torch.save`` did not write it.
        CheckpointDeviceError: A storage cannot be placed on its device.
    """
    stream.seek(0, io.SEEK_END)
    size = stream.tell()
    stream.seek(0)
    if size == 0:
        raise IncompleteCheckpointError(name, 'the file is empty (0 bytes)')
    head = stream.read(len(ZIP_MAGIC))
    stream.seek(0)
    if head == ZIP_MAGIC:
        return _read_zip(stream, name, size, map_location)
    if _is_tar(stream):
        raise UnsafeCheckpointError(
            name, 'it is in the pre-0.4 tar format, which cannot be checked before loading'
        )
    return _read_legacy(stream, name, size, map_location)
