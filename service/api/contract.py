"""`GET /schema/order.json`: the message contract (`service/model/contract.py`) for producers,
under this deployment's `ORDER_UNKNOWN_FIELDS`."""

from litestar import Response, get

from service.api.problems import AnyRequest
from service.api.state import AppState
from service.model.contract import order_schema_json

SCHEMA_MEDIA_TYPE = "application/schema+json"


@get(
    "/schema/order.json",
    sync_to_thread=False,
    summary="The JSON Schema every message on the order topic must meet",
)
def message_schema(request: AnyRequest) -> Response[bytes]:
    state: AppState = request.app.state.orders
    return Response(order_schema_json(state.settings.unknown_fields), media_type=SCHEMA_MEDIA_TYPE)
