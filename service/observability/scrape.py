"""What a Prometheus scrape answers, wherever it is served (the API's /metrics or the internal
metrics listener): every process's metrics, the cache's figures and the consumer's state."""

from service.cache import SharedCache
from service.observability import metrics
from service.run import consumer_state

CONTENT_TYPE = metrics.CONTENT_TYPE


def exposition(cache: SharedCache) -> bytes:
    """The Prometheus text exposition at this moment."""
    consumer = consumer_state.read()
    extra = consumer_state.metric_lines(consumer) if consumer is not None else []
    return metrics.render(cache.stats(), extra)
