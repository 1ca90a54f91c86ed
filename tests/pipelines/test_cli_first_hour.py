"""What a newcomer meets first on the command line: every command's ``--help`` shows its help
text whole (hilt.toml sections such as ``[tracking]`` were eaten as Rich markup); a port no
server can listen on is a usage error naming the option, not a stack trace; a second `hilt
demo` while the first still serves says so before it writes anything. In process (typer's
runner): no store, no server starts."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from hilt.pipelines.cli import app
from hilt.pipelines.errors import InputError
from hilt.pipelines.ports import require_free_port
from tests.conftest import CONFIG, CSV

#: Words of a help text that markup can take for its own: ``[section]`` (Rich markup, Markdown
#: links) and ``<name>`` (HTML in Markdown).
MARKUP_LIKE = re.compile(r"\[[\w.]+\]|<\w+>")


def commands(
    command: Any = None, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every command and command group of `hilt`, with its path."""
    command = get_command(app) if command is None else command
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from commands(sub, (*path, name))


def help_texts(command: Any) -> list[str]:
    return [command.help or ""] + [getattr(p, "help", None) or "" for p in command.params]


def test_every_help_shows_its_text_whole() -> None:
    runner = CliRunner()
    seen = 0
    for path, command in commands():
        result = runner.invoke(app, [*path, "--help"], terminal_width=100)
        assert result.exit_code == 0, (path, result.output)
        assert "Traceback" not in result.output
        for text in help_texts(command):
            for word in MARKUP_LIKE.findall(text):
                assert word in result.output, (path, word)
                seen += 1
    # The check above has something to check: hilt.toml's sections are named in the help.
    assert seen >= 5


def test_every_command_option_and_argument_says_what_it_is() -> None:
    missing = [
        (path, getattr(p, "opts", p.name))
        for path, command in commands()
        for p in [command, *command.params]
        if not getattr(p, "help", None) and getattr(p, "name", None) != "help"
    ]
    assert missing == []


@pytest.mark.parametrize(
    "args",
    [
        ["serve", "--port", "99999"],
        ["serve", "--store-port", "0"],
        ["demo", "--port", "65536"],
        ["store", "serve", "--port", "-1"],
        ["lab", "--port", "70000"],
        ["tracking", "ui", "--port", "0"],
    ],
)
def test_a_port_out_of_range_is_a_usage_error(args: list[str], tmp_path: Path) -> None:
    result = CliRunner().invoke(app, [*args, "--workspace", str(tmp_path / "none")])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    option = next(a for a in args if a.startswith("--"))
    assert f"Invalid value for '{option}'" in result.output


def test_a_port_out_of_range_is_refused_before_anything_starts() -> None:
    """For the servers started from code (tests, benchmarks), not only from the CLI: an
    OverflowError of the socket's bind used to escape as a stack trace."""
    for port in (0, 65536, 99999):
        with pytest.raises(InputError, match=rf"port {port}: a TCP port is 1-65535"):
            require_free_port("127.0.0.1", port)


def test_runs_list_refuses_a_limit_below_one(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["runs", "list", "--limit", "0", "--workspace", str(tmp_path / "none")]
    )
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--limit'" in result.output


@pytest.mark.parametrize("taken", ["--port", "--store-port"])
def test_demo_with_its_port_taken_stops_before_it_writes(taken: str, tmp_path: Path) -> None:
    """As when `make demo` runs while another one still serves: the set-up used to run (and
    issue new API tokens) before the port was found taken."""
    ws = tmp_path / "demo"
    with socket.socket() as busy, socket.socket() as free:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        free.bind(("127.0.0.1", 0))
        ports = {"--port": free.getsockname()[1], "--store-port": free.getsockname()[1]}
        ports[taken] = busy.getsockname()[1]
        free.close()
        args = ["demo", "--workspace", str(ws), "--config", str(CONFIG), "--data", str(CSV)]
        for option, port in ports.items():
            args += [option, str(port)]
        result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert f"127.0.0.1:{ports[taken]}: the port is in use" in result.output
    assert f"give {taken} another port" in result.output
    assert not ws.exists()


def test_a_folder_that_is_not_a_workspace_names_the_workspaces_in_it(tmp_path: Path) -> None:
    """After `make demo` the commands' default folder, ./workspace, holds the demo's
    workspace/demo: the refusal says where it is instead of only "create one"."""
    from hilt.pipelines.store.create import create_workspace
    from hilt.pipelines.workspace import Workspace

    parent = tmp_path / "workspace"
    create_workspace(Workspace(parent / "demo"), CONFIG)
    (parent / "not-one").mkdir()
    result = CliRunner().invoke(app, ["audit", "verify", "--workspace", str(parent)])
    assert result.exit_code == 2, result.output
    assert "is not a hilt workspace" in result.output
    assert f"the workspaces in it: --workspace {parent / 'demo'})" in result.output
