"""Reading EXPLAIN (ANALYZE, FORMAT JSON) output: what a statement's plan read and did."""

from __future__ import annotations

import json
from typing import Any


def json_plan(plan: Any) -> dict[str, Any]:
    """The top node of an EXPLAIN (FORMAT JSON) answer (text or already decoded)."""
    value = json.loads(plan) if isinstance(plan, str) else plan
    return dict(value[0]["Plan"])


def plan_nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    """Every node of a plan tree."""
    out = [node]
    for child in node.get("Plans", []):
        out += plan_nodes(child)
    return out


async def explained(pool: Any, sql: str, *args: Any) -> list[dict[str, Any]]:
    """Every node of `sql`'s plan as it ran (EXPLAIN ANALYZE), in a transaction rolled back
    after: the statement's writes are not kept."""
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            plan = await conn.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, *args)
        finally:
            await tx.rollback()
    return plan_nodes(json_plan(plan))
