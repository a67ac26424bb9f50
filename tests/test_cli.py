"""The ``s2ssm`` command line: subcommands are registered, the graph demo runs, errors exit 2."""

from __future__ import annotations

from pathlib import Path

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


@pytest.mark.parametrize("density", ["2", "-0.1", "nan", "dense"])
def test_graph_demo_refuses_a_density_outside_0_1(density, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["graph-demo", "--density", density])
    assert exit_info.value.code == 2
    assert "--density: expected a probability" in capsys.readouterr().err


def test_file_system_errors_exit_with_a_message_not_a_traceback(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("")
    config = Path(__file__).resolve().parents[1] / "configs" / "small_cpu.toml"
    args = ["train", "--config", str(config), "--out-dir", str(afile / "sub")]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--set", "optim.steps=0", "--set", "vae.pretrain_steps=0"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("s2ssm train: error:") and "Not a directory" in err


def test_an_unknown_device_is_a_clear_error():
    from s2ssm.errors import InvalidInputError
    from s2ssm.training.trainer import select_device

    with pytest.raises(InvalidInputError, match="device: expected"):
        select_device("nosuch")


def test_a_missing_optional_dependency_names_the_extra_to_install(tmp_path):
    # a fresh interpreter in which torch cannot be imported (pip install s2ssm without extras)
    import subprocess
    import sys

    config = Path(__file__).resolve().parents[1] / "configs" / "small_cpu.toml"
    script = (
        "import sys; sys.modules['torch'] = None\n"
        "from s2ssm.cli import main\n"
        f"main(['train', '--config', {str(config)!r}, '--out-dir', {str(tmp_path)!r}])\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert "needs torch, which is not installed" in done.stderr
    assert "pip install 's2ssm[torch]'" in done.stderr and "Traceback" not in done.stderr


def test_help_is_plain_text_with_every_option_explained_and_defaults_shown():
    import argparse

    from s2ssm.cli import build_parser
    from s2ssm.sim import ENVIRONMENTS

    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(commands.choices) >= {"generate", "train", "eval", "plot", "reproduce", "graph-demo"}
    for name, sub in commands.choices.items():
        for action in sub._actions:
            assert action.help, f"s2ssm {name}: {action.option_strings or action.dest} has no help"
        text = sub.format_help()
        assert "``" not in text and ":mod:" not in text and ":func:" not in text, name
    generate = commands.choices["generate"].format_help()
    assert "(default: 32)" in generate and "(default: 0)" in generate
    assert all(env in " ".join(generate.split()) for env in ENVIRONMENTS)
    train = " ".join(commands.choices["train"].format_help().split())
    assert "small_cpu" in train and "paper_s2ssm" in train
