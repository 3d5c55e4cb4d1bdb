"""`resnet-explorer app [STREAMLIT OPTIONS]`: start the ResNet Explorer app.

Runs `streamlit run app.py` on the app beside the shipped results (the repository root in a
checkout, resnet_core/_app/ in an installed package) from the current folder, so runs are
recorded in $RESNET_EXPLORER_CHECKPOINTS or ./checkpoints and CIFAR-10 is looked for in
$RESNET_EXPLORER_DATA or ./data. Every argument goes to `streamlit run` unchanged, e.g.
`resnet-explorer app --server.port 8600 --server.headless true`.

`resnet-explorer app --class [STREAMLIT OPTIONS]` starts a class server: it listens on every
interface (unless --server.address says otherwise), shows no tracebacks, and prints the
teacher's link with a random token once ($RESNET_EXPLORER_TEACHER_TOKEN to choose it).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import tomllib

from resnet_core.common.classroom import CLASS_ENV, TOKEN_ENV, new_token
from resnet_core.common.files import read_regular_text
from resnet_core.training.experiments import shipped_root

__all__ = ["register", "app_dir", "class_launch", "streamlit_command"]

HELP_FLAGS = ("-h", "--help")
CLASS_FLAG = "--class"


def app_dir() -> Path:
    """The folder holding app.py, pages/ and checkpoints/demo (shipped_root's grandparent)."""
    return shipped_root().parents[1]


def config_flags(folder: Path) -> list[str]:
    """The app's .streamlit/config.toml as `--section.option value` flags.

    Streamlit reads config.toml from the current folder, not from the script's; the flags
    give the app its settings wherever it is started from.
    """
    path = folder / ".streamlit" / "config.toml"
    if not path.is_file():
        return []
    flags = []
    for section, options in tomllib.loads(read_regular_text(path)).items():
        for name, value in options.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            flags += [f"--{section}.{name}", text]
    return flags


def streamlit_command(extra: Sequence[str] = ()) -> list[str]:
    """The command that starts the app; `extra` options come last, so they win."""
    folder = app_dir()
    script = folder / "app.py"
    if not script.is_file():
        raise ValueError(f"{script}: the app is missing from this installation")
    flags = config_flags(folder)  # incl. no file watcher: nobody edits site-packages
    return [sys.executable, "-m", "streamlit", "run", str(script), *flags, *extra]


def _option(args: Sequence[str], name: str) -> str | None:
    """The value of `--name VALUE` or `--name=VALUE` among streamlit options."""
    for index, arg in enumerate(args):
        if arg == name and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def class_launch(args: Sequence[str], env: dict[str, str]) -> tuple[list[str], dict, str]:
    """For `app --class`: the streamlit options, the environment and the teacher's link."""
    rest = [arg for arg in args if arg != CLASS_FLAG]
    token = env.get(TOKEN_ENV) or new_token()
    flags = ["--client.showErrorDetails", "none"]
    if _option(rest, "--server.address") is None:
        flags += ["--server.address", "0.0.0.0"]
    host = _option(rest, "--server.address") or socket.gethostname()
    host = socket.gethostname() if host in ("0.0.0.0", "::") else host
    link = f"http://{host}:{_option(rest, '--server.port') or 8501}/?teacher={token}"
    return [*flags, *rest], {**env, CLASS_ENV: "on", TOKEN_ENV: token}, link


def _cmd_app(args: argparse.Namespace) -> int:
    if any(flag in HELP_FLAGS for flag in args.streamlit_args):
        args.app_parser.print_help()
        return 0
    options, env = list(args.streamlit_args), dict(os.environ)
    if CLASS_FLAG in options:
        options, env, link = class_launch(options, env)
        sys.stderr.write(
            "A class server. The teacher's link (shown this once; whoever opens it is the "
            f"teacher):\n\n    {link}\n\nStudents open the same address without ?teacher=...\n"
        )
    command = streamlit_command(options)
    sys.stderr.write(f"starting the app: {' '.join(command[1:5])}\n")
    sys.stderr.flush()
    if os.name == "posix":  # hand the process over: Ctrl+C and kill reach streamlit itself
        os.execve(command[0], command, env)
    return subprocess.call(command, env=env)


def register(subparsers: argparse._SubParsersAction) -> None:
    # prefix_chars="+": every "--section.option" is an argument for streamlit, not for us.
    parser = subparsers.add_parser(
        "app",
        help="start the ResNet Explorer app (options go to `streamlit run`)",
        description=__doc__.splitlines()[0],
        epilog="--class starts a class server (a teacher link, students apart). Any "
        "`streamlit run` option can follow, e.g. --server.port 8600 --server.headless true; "
        "see `streamlit run --help`.",
        prefix_chars="+",
        add_help=False,
    )
    parser.add_argument("streamlit_args", nargs="*", metavar="STREAMLIT_OPTION")
    parser.set_defaults(func=_cmd_app, app_parser=parser)
