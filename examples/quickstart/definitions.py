"""Quickstart: five assets over a small CSV of orders, standard library only.

raw_orders -> clean_orders -> revenue_by_region -> sales_report
                           -> top_customers     ->

Try: ``servo plan``, ``servo lineage clean_orders``, ``servo assets`` in this folder.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from servo import asset

DATA = Path(__file__).parent / "data" / "orders.csv"

Row = dict[str, Any]


@asset(owner="data-platform", tags={"layer": "raw"}, asset_type="table")
def raw_orders() -> list[dict[str, str]]:
    """Orders as read from data/orders.csv, every field a string."""
    with DATA.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _parse(row: dict[str, str]) -> Row | None:
    """A typed order, or None when the row is unusable."""
    customer = row["customer"].strip()
    try:
        quantity = int(row["quantity"])
        unit_price = Decimal(row["unit_price"])
    except (ValueError, InvalidOperation):
        return None
    if not customer or quantity <= 0 or unit_price < 0:
        return None
    return {**row, "customer": customer, "quantity": quantity, "unit_price": unit_price}


@asset(owner="data-platform", tags={"layer": "clean"}, asset_type="table")
def clean_orders(raw_orders: list[dict[str, str]]) -> list[Row]:
    """Valid orders: no blank customer, positive quantity, one row per order_id."""
    seen: set[str] = set()
    clean: list[Row] = []
    for row in raw_orders:
        parsed = _parse(row)
        if parsed is None or parsed["order_id"] in seen:
            continue
        seen.add(parsed["order_id"])
        clean.append(parsed)
    return clean


@asset(owner="finance", tags={"layer": "mart"})
def revenue_by_region(clean_orders: list[Row]) -> dict[str, Decimal]:
    """Revenue (quantity x unit price) per region, largest first."""
    totals: defaultdict[str, Decimal] = defaultdict(Decimal)
    for row in clean_orders:
        totals[row["region"]] += row["quantity"] * row["unit_price"]
    return dict(sorted(totals.items(), key=lambda item: (-item[1], item[0])))


@asset(owner="sales", tags={"layer": "mart"})
def top_customers(clean_orders: list[Row], limit: int = 5) -> list[tuple[str, Decimal]]:
    """The customers with the most revenue."""
    totals: defaultdict[str, Decimal] = defaultdict(Decimal)
    for row in clean_orders:
        totals[row["customer"]] += row["quantity"] * row["unit_price"]
    ranked = sorted(totals.items(), key=lambda item: (-item[1], item[0]))
    return ranked[:limit]


@asset(owner="sales", tags={"layer": "report"}, asset_type="report")
def sales_report(
    revenue_by_region: dict[str, Decimal], top_customers: list[tuple[str, Decimal]]
) -> str:
    """A markdown report of revenue by region and the top customers."""
    lines = ["# Sales report", "", "| Region | Revenue |", "|---|---:|"]
    lines += [f"| {region} | {revenue:.2f} |" for region, revenue in revenue_by_region.items()]
    lines += ["", "| Customer | Revenue |", "|---|---:|"]
    lines += [f"| {customer} | {revenue:.2f} |" for customer, revenue in top_customers]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    # Run the assets in plan order by hand until `servo materialize` exists.
    from servo.sdk import load_definitions

    definitions = load_definitions(__file__)
    values: dict[str, Any] = {}
    for name, definition in definitions.assets.items():
        values[name] = definition.call(values)
    print(values["sales_report"])
