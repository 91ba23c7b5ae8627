"""The ``mtl-bt`` command line."""

from __future__ import annotations

import contextlib
import sys
import traceback
import warnings

import click

from mtl_bt import __version__
from mtl_bt.errors import UserError


@contextlib.contextmanager
def _one_line_warnings():
    """Data warnings as one ``warning: ...`` line on stderr, when they happen (not Python's
    ``file:line: DataWarning:`` form); other warnings as usual."""
    from mtl_bt.data.validate import DataWarning

    show = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, DataWarning):
            click.echo(f"warning: {message}", err=True)
        else:
            show(message, category, filename, lineno, file, line)

    warnings.showwarning = showwarning
    try:
        yield
    finally:
        warnings.showwarning = show


class _Group(click.Group):
    """Prints user errors as one line (exit 2) and bugs with a hint (exit 1)."""

    def invoke(self, ctx: click.Context):
        try:
            with _one_line_warnings():
                return super().invoke(ctx)
        except UserError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(2)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except BrokenPipeError:
            # the reader went away (e.g. `mtl-bt data info | head`): not an error
            sys.stderr.close()
            ctx.exit(0)
        except KeyboardInterrupt:
            click.echo("Interrupted; finished artefacts were kept.", err=True)
            ctx.exit(130)
        except Exception as exc:
            from mtl_bt.atomic import disk_full

            if disk_full(exc):  # a write outside mtl_bt.atomic (a library's temp file)
                where = f" writing {exc.filename}" if getattr(exc, "filename", None) else ""
                click.echo(
                    f"Error: no space left on the device{where} ({exc}); free some space and "
                    "run again",
                    err=True,
                )
                ctx.exit(2)
            traceback.print_exc()
            click.echo(
                "Unexpected error (a bug in mtl-bt or a plugin): the traceback is above; "
                "please report it.",
                err=True,
            )
            ctx.exit(1)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="mtl-bt")
def main() -> None:
    """Multi-task learning for Backtrader strategies."""
    _plain_plugin_warnings()


def _plain_plugin_warnings() -> None:
    """Plugin warnings print as one line naming the plugin (no source line)."""
    from mtl_bt.registry import PluginWarning

    default = warnings.formatwarning
    if getattr(default, "_mtl_bt", False):
        return

    def fmt(message, category, filename, lineno, line=None):
        if isinstance(category, type) and issubclass(category, PluginWarning):
            return f"Warning: {message}\n"
        return default(message, category, filename, lineno, line)

    fmt._mtl_bt = True  # type: ignore[attr-defined]
    warnings.formatwarning = fmt


def _add_commands() -> None:
    from mtl_bt.cli import (
        backtest_cmd,
        check_cmd,
        data_cmd,
        paper_cmd,
        plugins_cmd,
        reconcile_cmd,
        report_cmd,
        run_cmd,
        train_cmd,
    )

    main.add_command(plugins_cmd.plugins)
    for module in (
        data_cmd, train_cmd, backtest_cmd, run_cmd, check_cmd, paper_cmd, report_cmd,
        reconcile_cmd,
    ):  # fmt: skip
        for command in module.commands:
            main.add_command(command)


_add_commands()

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
