"""Storage: the schema, engines for SQLite and PostgreSQL, and Alembic migrations."""
