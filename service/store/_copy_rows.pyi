"""Types of the native COPY row formatter built from `_copy_rows.c`."""

from service.model import Order

class Rows:
    def __init__(
        self,
        fields: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]],
        buffers: tuple[bytearray, bytearray, bytearray, bytearray, bytearray],
    ) -> None: ...
    def add(self, order: Order, body: bytes, /) -> None: ...
