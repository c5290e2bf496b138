"""PostgreSQL storage: migrations, the stores the core's ports describe, the COPY writer,
and the embedded server used when no database is configured."""
