"""``mtl-bt reconcile DIR``: a paper run against a backtest of its own bars and models."""

from __future__ import annotations

import click


@click.command("reconcile")
@click.argument("folder", metavar="DIR", type=click.Path(file_okay=False, exists=True))
@click.pass_context
def reconcile(ctx, folder):
    """Replay DIR's journaled bars as a backtest with the journaled models (swapped at the same
    bars) and print the first divergence: bar, symbol, field, both values and why when known.

    Exit 0: identical; 1: they diverge; 2: the folder cannot be replayed. See docs/paper.md."""
    from mtl_bt.paper.reconcile import reconcile as run

    result = run(folder)
    if result.divergence is None:
        click.echo(
            f"identical: {result.bars} decided bars and {result.fills} fills equal a backtest of "
            f"the journal's bars with its {result.models} model(s)"
        )
        return
    click.echo(result.divergence.line())
    click.echo(f"(identical before it: {result.bars} decided bars, {result.fills} fills)")
    ctx.exit(1)


commands: list[click.Command] = [reconcile]
