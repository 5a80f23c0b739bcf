"""Tests of the ``graphformer`` entry point (cli.py): the help screen and the command table."""

import pytest

from graphformer.cli import COMMANDS, main


def test_no_command_prints_help_and_returns_2(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    assert "usage: graphformer" in out and "demo" in out


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_its_own_help(command, capsys):
    """Each entry of the command table imports and describes its flags (argparse exits 0 on --help)."""
    with pytest.raises(SystemExit) as stop:
        main([command, "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: graphformer {command}" in out and "--help" in out
