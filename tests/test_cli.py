"""The ``s2ssm`` command line: subcommands are registered, the graph demo runs, errors exit 2."""

from __future__ import annotations

import pytest

from s2ssm import __version__
from s2ssm.cli import build_parser, main


def test_every_subcommand_is_registered():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert {"generate", "train", "eval", "plot", "reproduce", "graph-demo"} <= set(commands)


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_graph_demo_scores_random_graphs(capsys):
    assert main(["graph-demo", "--graphs", "500", "--nodes", "5", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "500 two-layer stacks of 5 nodes" in out
    assert out.count("SHD reversal=") == 4


def test_graph_demo_refuses_bad_sizes(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["graph-demo", "--nodes", "65"])
    assert exit_info.value.code == 2
    assert "--nodes in 1..64" in capsys.readouterr().err
