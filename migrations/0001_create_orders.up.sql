-- The order, normalised into four tables keyed by order_uid.
--
-- No foreign keys from the child tables to orders, on purpose. The only writer
-- (service/store/writer.py) inserts an order and all of its parts in one transaction, and
-- only for orders that transaction itself created, so a child row can never be orphaned by
-- it. A foreign key would re-check that on every child row: measured with `psql \copy`
-- on 200,000 orders / 600,000 items, the checks halve COPY throughput (about 18,000 vs
-- 40,000 orders/s on two cores). Every child table's primary key starts with order_uid, so
-- reading an order with its parts is index lookups on all four tables.

CREATE TABLE orders (
    order_uid          text        PRIMARY KEY,
    track_number       text        NOT NULL,
    entry              text        NOT NULL,
    locale             text        NOT NULL,
    internal_signature text        NOT NULL,
    customer_id        text        NOT NULL,
    delivery_service   text        NOT NULL,
    shardkey           text        NOT NULL,
    sm_id              integer     NOT NULL,
    date_created       timestamptz NOT NULL,
    oof_shard          text        NOT NULL
);

-- The recent-orders list and the cache warm-up read the newest orders first.
CREATE INDEX orders_date_created_idx ON orders (date_created DESC);

CREATE TABLE deliveries (
    order_uid text PRIMARY KEY,
    name      text NOT NULL,
    phone     text NOT NULL,
    zip       text NOT NULL,
    city      text NOT NULL,
    address   text NOT NULL,
    region    text NOT NULL,
    email     text NOT NULL
);

CREATE TABLE payments (
    order_uid     text    PRIMARY KEY,
    transaction   text    NOT NULL,
    request_id    text    NOT NULL,
    currency      text    NOT NULL,
    provider      text    NOT NULL,
    amount        integer NOT NULL,
    payment_dt    bigint  NOT NULL,
    bank          text    NOT NULL,
    delivery_cost integer NOT NULL,
    goods_total   integer NOT NULL,
    custom_fee    integer NOT NULL
);

-- line_no keeps the items in the order they arrived in, so the API returns them unchanged.
CREATE TABLE items (
    order_uid    text     NOT NULL,
    line_no      smallint NOT NULL,
    chrt_id      bigint   NOT NULL,
    track_number text     NOT NULL,
    price        integer  NOT NULL,
    rid          text     NOT NULL,
    name         text     NOT NULL,
    sale         smallint NOT NULL,
    size         text     NOT NULL,
    total_price  integer  NOT NULL,
    nm_id        bigint   NOT NULL,
    brand        text     NOT NULL,
    status       integer  NOT NULL,
    PRIMARY KEY (order_uid, line_no)
);
