"""The ``xiaoyou`` console script: ``serve``, ``simulate-device`` and ``check-config``.

Subcommands live in an explicit registry (:data:`COMMANDS`); each has an ``add_arguments``
and a ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from core.errors import ConfigError
from core.settings import Settings, load_settings

CHECK_CONFIG_SETTINGS_HEADING = "生效的设置（密钥已隐藏）："


@dataclass(frozen=True, slots=True)
class Command:
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, help="TOML config file")


def _settings(args: argparse.Namespace) -> Settings:
    config: Path | None = args.config
    if config is not None and not config.is_file():
        raise ConfigError(f"config file not found: {config}")
    settings = load_settings(config)
    server = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    if server:
        settings = settings.model_copy(update={"server": settings.server.model_copy(update=server)})
    if getattr(args, "ray_address", None):
        ray = settings.ray.model_copy(update={"address": args.ray_address})
        settings = settings.model_copy(update={"ray": ray})
    return settings


# -- serve ------------------------------------------------------------------------------------
def _serve_arguments(parser: argparse.ArgumentParser) -> None:
    _add_config(parser)
    parser.add_argument("--host", default=None, help="bind address (default: server.host)")
    parser.add_argument("--port", type=int, default=None, help="port (default: server.port)")
    parser.add_argument(
        "--ray-address",
        default=None,
        metavar="HOST:PORT",
        help="join this Ray cluster and run the ray.workers models there (default: ray.address)",
    )


def _serve(args: argparse.Namespace) -> int:
    from bot.app import create_app  # imported here: the other subcommands skip the server stack
    from bot.serve import serve

    settings = _settings(args)
    # SIGINT/SIGTERM: the app drains first (stop admission, tell queued users, finish turns,
    # close sockets with 1001), then uvicorn stops accepting, runs the lifespan shutdown
    # (device hub, scheduler, model manager) and exits.
    serve(create_app(settings), settings)
    return 0


# -- simulate-device (devices/simulator_cli.py) -------------------------------------------------
def _simulate_arguments(parser: argparse.ArgumentParser) -> None:
    import devices.simulator_cli as simulator_cli

    simulator_cli.add_arguments(parser)


def _simulate(args: argparse.Namespace) -> int:
    import devices.simulator_cli as simulator_cli

    return int(simulator_cli.run(args))


# -- check-config -------------------------------------------------------------------------------
def _check_arguments(parser: argparse.ArgumentParser) -> None:
    _serve_arguments(parser)
    parser.add_argument(
        "--json", action="store_true", help="print only the settings as JSON (for scripts)"
    )


def _check_config(args: argparse.Namespace) -> int:
    from bot.summary import startup_summary, with_host_defaults
    from core.models.settings import unselected_provider_settings

    settings = with_host_defaults(_settings(args))
    for note in unselected_provider_settings(settings.models):
        print(f"warning: {note}", file=sys.stderr)
    # mode="json" renders every SecretStr as "**********"
    shown = json.dumps(settings.model_dump(mode="json"), ensure_ascii=False, indent=2)
    if args.json:
        print(shown)
        return 0
    print(startup_summary(settings))
    print(f"\n{CHECK_CONFIG_SETTINGS_HEADING}")
    print(shown)
    return 0


COMMANDS: dict[str, Command] = {
    "serve": Command("run the server (QQ bot, devices, admin API)", _serve_arguments, _serve),
    "simulate-device": Command(
        "talk to a server as a xiaozhi device", _simulate_arguments, _simulate
    ),
    "check-config": Command(
        "print where to connect, tokens, models, then the settings (secrets masked)",
        _check_arguments,
        _check_config,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser: a command name and its raw arguments. Each command's own parser
    is built only when that command runs, so ``serve`` never imports the simulator."""
    listing = "\n".join(f"  {name:<16} {command.help}" for name, command in COMMANDS.items())
    parser = argparse.ArgumentParser(
        prog="xiaoyou",
        description=__doc__.splitlines()[0] if __doc__ else None,
        epilog=f"commands:\n{listing}\n\n'xiaoyou COMMAND --help' shows a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=list(COMMANDS), metavar="COMMAND")
    parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def command_parser(name: str) -> argparse.ArgumentParser:
    command = COMMANDS[name]
    parser = argparse.ArgumentParser(prog=f"xiaoyou {name}", description=command.help)
    command.add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    top = build_parser().parse_args(argv)
    args = command_parser(top.command).parse_args(top.args)
    args.command = top.command
    try:
        return COMMANDS[top.command].run(args)
    except ConfigError as exc:
        print(f"xiaoyou: configuration error: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
