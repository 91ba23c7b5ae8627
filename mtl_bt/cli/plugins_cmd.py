"""``mtl-bt plugins``: what is registered, by whom."""

from __future__ import annotations

import json

import click

from mtl_bt import registry


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def plugins(as_json: bool) -> None:
    """List every registered plugin item with kind, name, description and provider."""
    entries = [entry.as_dict() for entry in registry.registry().entries()]
    if as_json:
        click.echo(json.dumps(entries, indent=2))
        return
    if not entries:
        click.echo("no plugins registered")
        return
    width = max(len(e["kind"]) for e in entries)
    name_w = max(len(e["name"]) for e in entries)
    for e in entries:
        dist = f"{e['distribution']} {e['version']}" if e["distribution"] else e["plugin"]
        click.echo(f"{e['kind']:<{width}}  {e['name']:<{name_w}}  {e['description']}  [{dist}]")
