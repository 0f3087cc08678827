"""The order as it travels: wire types with their validation, and the one decoder and encoder."""

from service.model.codec import Rejection, decode_order, encode_order
from service.model.order import Delivery, Item, Order, Payment

__all__ = ["Delivery", "Item", "Order", "Payment", "Rejection", "decode_order", "encode_order"]
