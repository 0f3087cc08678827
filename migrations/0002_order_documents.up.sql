-- The API's response body for each order, kept beside the four normalised tables.
--
-- A cache miss and the warm-up used to rebuild each order from the four tables (a join plus a
-- json_agg of the items) and encode it in Python. Measured on two cores: the warm-up of
-- 20,000 orders took 0.66 s, i.e. about 33 s for 1,000,000, and `fetch_order` was half of
-- a miss. Reading one bytea per order instead: 1,000,000 bodies stream out with a binary
-- COPY in about 2.4 s, and a miss is a primary-key lookup.
--
-- The four tables stay the record; this table is derived from them. The writer fills it in
-- the same transaction, from the same decoded order, with the encoder the cache uses, so a
-- miss returns the very bytes of a hit.
CREATE TABLE order_documents (
    order_uid text  PRIMARY KEY,
    body      bytea NOT NULL
);

-- Orders stored before this migration get a body built by PostgreSQL's JSON functions: the
-- same fields in the same order with the same values (timestamps as UTC with an offset);
-- only the whitespace differs from the service's encoder.
SET LOCAL TimeZone = 'UTC';

INSERT INTO order_documents (order_uid, body)
SELECT o.order_uid,
       convert_to(json_build_object(
           'order_uid', o.order_uid,
           'track_number', o.track_number,
           'entry', o.entry,
           'delivery', json_build_object(
               'name', d.name, 'phone', d.phone, 'zip', d.zip, 'city', d.city,
               'address', d.address, 'region', d.region, 'email', d.email),
           'payment', json_build_object(
               'transaction', p.transaction, 'request_id', p.request_id,
               'currency', p.currency, 'provider', p.provider, 'amount', p.amount,
               'payment_dt', p.payment_dt, 'bank', p.bank, 'delivery_cost', p.delivery_cost,
               'goods_total', p.goods_total, 'custom_fee', p.custom_fee),
           'items', (SELECT coalesce(json_agg(json_build_object(
                         'chrt_id', i.chrt_id, 'track_number', i.track_number,
                         'price', i.price, 'rid', i.rid, 'name', i.name, 'sale', i.sale,
                         'size', i.size, 'total_price', i.total_price, 'nm_id', i.nm_id,
                         'brand', i.brand, 'status', i.status) ORDER BY i.line_no), '[]')
                       FROM items i WHERE i.order_uid = o.order_uid),
           'locale', o.locale,
           'internal_signature', o.internal_signature,
           'customer_id', o.customer_id,
           'delivery_service', o.delivery_service,
           'shardkey', o.shardkey,
           'sm_id', o.sm_id,
           'date_created', o.date_created,
           'oof_shard', o.oof_shard)::text, 'UTF8')
  FROM orders o
  JOIN deliveries d USING (order_uid)
  JOIN payments p USING (order_uid);
