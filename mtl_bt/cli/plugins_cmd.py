"""``mtl-bt plugins``: what is registered, by whom, and which plugins were skipped."""

from __future__ import annotations

import json

import click

from mtl_bt import registry


def _provider(e: dict) -> str:
    dist = f"{e['distribution']} {e['version']}" if e.get("distribution") else e["plugin"]
    return f"{dist}; {e['source']}" if e.get("source") else dist


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def plugins(as_json: bool) -> None:
    """List every registered plugin item with kind, name, description and provider,
    then every plugin (or item) that was skipped, with its error."""
    reg = registry.registry()
    entries = [entry.as_dict() for entry in reg.entries()]
    failed = [f.as_dict() for f in [*reg.failures, *reg.conflicts()]]
    if as_json:
        click.echo(json.dumps(entries + failed, indent=2))
        return
    if not entries:
        click.echo("no plugins registered")
    else:
        width = max(len(e["kind"]) for e in entries)
        name_w = max(len(e["name"]) for e in entries)
        for e in entries:
            click.echo(
                f"{e['kind']:<{width}}  {e['name']:<{name_w}}  {e['description']}  [{_provider(e)}]"
            )
    if failed:
        click.echo("")
        click.echo("skipped (fix or disable with MTL_BT_DISABLE_PLUGINS):")
        for f in failed:
            what = f" {f['kind']} {f['name']!r}" if f["name"] else ""
            click.echo(f"FAILED  plugin {f['plugin']!r}{what}: {f['error']}")
