"""The order as it travels: wire types with their validation, and the one decoder and encoder."""

from service.model.codec import (
    UNKNOWN_FIELDS_POLICIES,
    Document,
    Rejection,
    UnknownFields,
    decode_order,
    encode_order,
)
from service.model.order import Delivery, Item, Order, Payment

__all__ = [
    "UNKNOWN_FIELDS_POLICIES",
    "Delivery",
    "Document",
    "Item",
    "Order",
    "Payment",
    "Rejection",
    "UnknownFields",
    "decode_order",
    "encode_order",
]
