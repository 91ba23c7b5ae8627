"""``mtl-bt report DIR``: report.html and metrics for a paper folder or any run folder."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("report")
@click.argument("folder", metavar="DIR", type=click.Path(file_okay=False))
@click.option("--no-plots", is_flag=True, help="leave out the plots (faster)")
def report(folder, no_plots):
    """Write DIR/report.html (and report.md, metrics.json) for a paper folder or a run folder.

    A paper folder (OUT of `mtl-bt paper`, with paper.sqlite) gets a backtest's metrics and
    report computed from its journal, against buy & hold over the same bars; a run folder
    (`mtl-bt run`/`demo`) gets its report rendered again from its files. See docs/paper.md."""
    from mtl_bt.errors import OutputError

    path = Path(folder)
    if (path / "paper.sqlite").exists():
        from mtl_bt.paper.report import write_paper_report

        written = write_paper_report(path, plots_on=not no_plots)
    elif (path / "metrics.json").exists() and (path / "returns.csv").exists():
        from mtl_bt.report.run_report import write_run_report

        written = write_run_report(path, plots_on=not no_plots)
    else:
        raise OutputError(
            f"{path} is neither a paper folder (no paper.sqlite) nor a run folder (no "
            "metrics.json and returns.csv); give the --out of `mtl-bt paper` or of `mtl-bt run`"
        )
    import json

    metrics = json.loads((path / "metrics.json").read_text()).get("portfolio", {})
    shown = ", ".join(
        f"{k} {metrics[k]:.4g}"
        for k in ("sharpe", "cagr", "max_drawdown", "final_value")
        if isinstance(metrics.get(k), int | float)
    )
    click.echo(f"{shown}; report: {written.get('report.html', written.get('report.md'))}")


commands: list[click.Command] = [report]
