"""The CLI shell: plugin listing, user errors exit 2 without a traceback."""

import json

import click
from click.testing import CliRunner

from mtl_bt.cli import main
from mtl_bt.errors import ConfigError


def test_plugins_json_shape():
    result = CliRunner().invoke(main, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    entries = json.loads(result.output)
    assert entries
    for entry in entries:
        assert set(entry) == {
            "kind",
            "name",
            "description",
            "plugin",
            "distribution",
            "version",
            "source",
            "status",
        }
        assert entry["status"] == "ok"
    assert {"kind": "weighting", "name": "equal"}.items() <= next(
        e for e in entries if e["name"] == "equal"
    ).items()


def test_plugins_table_lists_names():
    result = CliRunner().invoke(main, ["plugins"])
    assert result.exit_code == 0
    assert "equal" in result.output and "builtin_weightings" not in result.output.split("[")[0]


def test_user_error_exits_2_with_one_line():
    @click.command("boom-user")
    def boom():
        raise ConfigError("bad thing in [training]; fix it")

    main.add_command(boom)
    try:
        result = CliRunner().invoke(main, ["boom-user"])
    finally:
        main.commands.pop("boom-user")
    assert result.exit_code == 2
    assert "Error: bad thing in [training]; fix it" in result.output
    assert "Traceback" not in result.output


def test_unexpected_error_exits_1_with_hint():
    @click.command("boom-bug")
    def boom():
        raise RuntimeError("bug")

    main.add_command(boom)
    try:
        result = CliRunner().invoke(main, ["boom-bug"])
    finally:
        main.commands.pop("boom-bug")
    assert result.exit_code == 1
    assert "Unexpected error" in result.output
