DROP TABLE order_documents;
