"""PostgreSQL's binary COPY format for rows of two non-null fields, parsed message by message.

The stream is a header (the 11-byte signature, a flags word, an extension of a given length),
then per row a 16-bit field count and each field as a 32-bit length and its bytes, then a
trailer: a field count of -1. All integers are big-endian. PostgreSQL sends one row per COPY
message, the header with the first row and the trailer on its own, but the format promises
nothing about where messages end, so a row may span messages: its start is kept until the
rest arrives.

The warm-up reads a million rows through this, so the loop per row is a few struct reads and
two slices: the second field stays a view on the message, copied only once, into the cache.
"""

import struct
from collections.abc import Iterable, Iterator
from itertools import chain

from service.errors import CopyFormatError

SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_HEADER = struct.Struct(">11sIi")  # signature, flags, extension length
_ROW = struct.Struct(">hi")  # field count, then the first field's length
_LENGTH = struct.Struct(">i")
_TRAILER = b"\xff\xff"

Pair = tuple[bytes, memoryview]


def pair_chunks(messages: Iterable[memoryview], chunk: int) -> Iterator[list[Pair]]:
    """The (first field, second field) of every row of the binary COPY whose messages are
    `messages`, in lists handed on once they hold `chunk` rows (more if one message held
    several; the last one shorter); CopyFormatError if the stream is malformed or ends before
    its trailer. One loop over the messages does the parsing: a function call per message
    would cost nearly as much as a row's parse."""
    unpack_row, unpack_length = _ROW.unpack_from, _LENGTH.unpack_from
    stream = iter(messages)
    first = memoryview(_after_header(stream))
    pending = b""  # the start of a row whose end is still to come
    ended = False
    batch: list[Pair] = []
    for message in chain((first,), stream):
        if ended:
            raise CopyFormatError("data after the binary COPY's trailer")
        data = memoryview(pending + message) if pending else message
        pending, pos, end = b"", 0, len(data)
        while end - pos >= 6:
            count, key_len = unpack_row(data, pos)
            if count != 2:
                break
            key_end = pos + 6 + key_len
            if key_len < 0 or key_end + 4 > end:
                break
            (val_len,) = unpack_length(data, key_end)
            val_end = key_end + 4 + val_len
            if val_len < 0 or val_end > end:
                break
            batch.append((bytes(data[pos + 6 : key_end]), data[key_end + 4 : val_end]))
            pos = val_end
        if pos < end and not (ended := _is_trailer(data[pos:])):
            pending = bytes(data[pos:])
        if len(batch) >= chunk:
            yield batch
            batch = []
    if not ended:
        raise CopyFormatError("the binary COPY ended before its trailer")
    if batch:
        yield batch


def _after_header(stream: Iterator[memoryview]) -> bytes:
    """Read messages until the header is complete; return the bytes that follow it."""
    data = b""
    for message in stream:
        data += message
        if (start := _header_end(data)) >= 0:
            return data[start:]
    raise CopyFormatError("the binary COPY ended before its trailer")


def _header_end(data: bytes) -> int:
    """Where the first row starts, or -1 if the header is not complete yet."""
    if len(data) < _HEADER.size:
        if not SIGNATURE.startswith(data[: len(SIGNATURE)]):
            raise CopyFormatError("not a binary COPY: bad signature")
        return -1
    signature, _flags, extension = _HEADER.unpack_from(data)
    if signature != SIGNATURE or extension < 0:
        raise CopyFormatError("not a binary COPY: bad signature")
    start: int = _HEADER.size + extension
    return start if start <= len(data) else -1


def _is_trailer(rest: memoryview) -> bool:
    """Whether the bytes the row loop stopped at are the trailer; if not, they must be the
    start of a row whose end is still to come, else CopyFormatError."""
    if len(rest) >= 2:
        count = int.from_bytes(rest[:2], "big", signed=True)
        if count == -1:
            if rest != _TRAILER:
                raise CopyFormatError("data after the binary COPY's trailer")
            return True
        if count != 2:
            raise CopyFormatError(f"a row of {count} fields, expected 2")
    start = 2
    for _field in range(2):
        if len(rest) < start + 4:
            break
        length = int.from_bytes(rest[start : start + 4], "big", signed=True)
        if length < 0:
            raise CopyFormatError("a NULL field, expected two non-null fields")
        start += 4 + length
    return False
