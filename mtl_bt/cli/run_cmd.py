"""CLI commands (filled by the feature that owns them)."""

import click

commands: list[click.Command] = []
