"""Database plumbing: connections, migrations, named SQL, outages, the embedded Postgres."""
