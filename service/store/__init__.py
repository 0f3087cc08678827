"""PostgreSQL: connections and error translation, migrations, the batch writer, the readers."""
