"""The migrated schema equals the declared one (dispatcher/db/schema.sql)."""

from __future__ import annotations

import difflib
from importlib import resources

import asyncpg  # type: ignore[import-untyped]

from dispatcher.db.migrate import migrate
from tests.support.pg import PgCluster

# Everything in schema `dispatcher` but the migrations' own bookkeeping table, as text that
# does not depend on the order objects were created in (columns keep their order).
_SNAPSHOT = """
SELECT 'column ' || c.relname || ' ' || string_agg(
           a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
           || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
           || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), ''),
           ', ' ORDER BY a.attnum)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
WHERE n.nspname = 'dispatcher' AND c.relkind IN ('r', 'v', 'p') AND c.relname <> 'schema_migrations'
GROUP BY c.relname
UNION ALL
SELECT 'constraint ' || c.relname || ' ' || k.conname || ' ' || pg_get_constraintdef(k.oid)
FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
WHERE k.connamespace = 'dispatcher'::regnamespace AND c.relname <> 'schema_migrations'
UNION ALL
SELECT 'index ' || indexdef FROM pg_indexes
WHERE schemaname = 'dispatcher' AND tablename <> 'schema_migrations'
UNION ALL
SELECT 'type ' || t.typname || ' ' || string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid
WHERE t.typnamespace = 'dispatcher'::regnamespace
GROUP BY t.typname
UNION ALL
SELECT 'function ' || pg_get_functiondef(p.oid) FROM pg_proc p
WHERE p.pronamespace = 'dispatcher'::regnamespace
UNION ALL
SELECT 'trigger ' || pg_get_triggerdef(t.oid) FROM pg_trigger t
JOIN pg_class c ON c.oid = t.tgrelid
WHERE c.relnamespace = 'dispatcher'::regnamespace AND NOT t.tgisinternal
UNION ALL
SELECT 'view ' || viewname || ' ' || definition FROM pg_views WHERE schemaname = 'dispatcher'
UNION ALL
SELECT 'sequence ' || sequencename || ' ' || data_type::text FROM pg_sequences
WHERE schemaname = 'dispatcher'
"""


async def _snapshot(dsn: str, sql: str | None) -> list[str]:
    """The schema of a blank database after ``sql`` (or, with None, after the migrations)."""
    conn = await asyncpg.connect(dsn)
    try:
        if sql is None:
            await migrate(conn)
        else:
            await conn.execute(sql)
        return sorted(row[0] for row in await conn.fetch(_SNAPSHOT))
    finally:
        await conn.close()


async def test_migrations_build_the_declared_schema(
    pg_blank_dsn: str, pg_cluster: PgCluster
) -> None:
    declared = (resources.files("dispatcher.db") / "schema.sql").read_text("utf-8")
    other = await pg_cluster.create_database(migrated=False)
    try:
        expected = await _snapshot(other, declared)
    finally:
        await pg_cluster.drop_database(other)

    migrated = await _snapshot(pg_blank_dsn, None)

    assert len(migrated) > 30  # tables, indexes, functions... were all seen
    diff = "\n".join(difflib.unified_diff(expected, migrated, "schema.sql", "migrations", n=0))
    assert migrated == expected, f"the migrations and db/schema.sql differ:\n{diff}"
