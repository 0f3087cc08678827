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

SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_HEADER = struct.Struct(">11sIi")  # signature, flags, extension length
_ROW = struct.Struct(">hi")  # field count, then the first field's length
_LENGTH = struct.Struct(">i")
_TRAILER = b"\xff\xff"

Pair = tuple[bytes, memoryview]


class CopyFormatError(ValueError):
    """The stream is not a binary COPY of rows of two non-null fields, or it ended early."""


class PairParser:
    """Feed the messages of one binary COPY in order to `feed`, then call `finish`."""

    def __init__(self) -> None:
        self._pending = b""  # the start of a row (or of the header) whose end is still to come
        self._in_header = True
        self._ended = False

    def feed(self, message: memoryview, out: list[Pair]) -> None:
        """Append to `out` the (first field, second field) of every row `message` completes."""
        if self._pending:
            message = memoryview(self._pending + message)
            self._pending = b""
        if self._ended:
            raise CopyFormatError("data after the binary COPY's trailer")
        pos = self._header_end(message) if self._in_header else 0
        if pos < 0:
            self._pending = bytes(message)
            return
        end = len(message)
        unpack_row, unpack_length = _ROW.unpack_from, _LENGTH.unpack_from
        while end - pos >= 6:
            count, key_len = unpack_row(message, pos)
            if count != 2:
                break
            key_end = pos + 6 + key_len
            if key_len < 0 or key_end + 4 > end:
                break
            (val_len,) = unpack_length(message, key_end)
            val_end = key_end + 4 + val_len
            if val_len < 0 or val_end > end:
                break
            out.append((bytes(message[pos + 6 : key_end]), message[key_end + 4 : val_end]))
            pos = val_end
        if pos < end:
            self._rest(message[pos:])

    def finish(self) -> None:
        """CopyFormatError unless the stream was complete, trailer included."""
        if not self._ended:
            raise CopyFormatError("the binary COPY ended before its trailer")

    def _header_end(self, message: memoryview) -> int:
        """Where the first row starts, or -1 if the header is not complete yet."""
        if len(message) < _HEADER.size:
            if not SIGNATURE.startswith(message[: len(SIGNATURE)]):
                raise CopyFormatError("not a binary COPY: bad signature")
            return -1
        signature, _flags, extension = _HEADER.unpack_from(message)
        if signature != SIGNATURE or extension < 0:
            raise CopyFormatError("not a binary COPY: bad signature")
        start: int = _HEADER.size + extension
        if start > len(message):
            return -1
        self._in_header = False
        return start

    def _rest(self, rest: memoryview) -> None:
        """Where the row loop stopped: the trailer, a row to finish later, or an error."""
        if len(rest) >= 2:
            count = int.from_bytes(rest[:2], "big", signed=True)
            if count == -1:
                if rest != _TRAILER:
                    raise CopyFormatError("data after the binary COPY's trailer")
                self._ended = True
                return
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
        self._pending = bytes(rest)
