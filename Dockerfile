# Multi-stage: build wheels (psycopg's C extension needs libpq headers and a compiler) in one
# stage, install them into a slim runtime that runs as a non-root user.
FROM python:3.11-slim-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends gcc libpq-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md requirements.lock requirements-build.lock ./
COPY service ./service
# The locked versions, each checked against its hash, then the service itself (no more deps)
# with its native cache reader and writer, compiled by the locked setuptools.
RUN pip install --no-cache-dir --require-hashes -r requirements-build.lock \
    && pip wheel --no-cache-dir --require-hashes --wheel-dir /wheels -r requirements.lock \
    && pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends libpq5 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 orders
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --no-deps /wheels/* && rm -rf /wheels
WORKDIR /app
COPY migrations ./migrations
COPY web ./web
ENV MIGRATIONS_DIR=/app/migrations \
    WEB_DIR=/app/web \
    METRICS_DIR=/tmp/order-service-metrics \
    HTTP_HOST=0.0.0.0 \
    PYTHONUNBUFFERED=1
USER orders
EXPOSE 8082
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request,os; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"HTTP_PORT\",\"8082\")}/healthz')"
ENTRYPOINT ["python", "-m", "service"]
CMD ["run"]
