"""``evtwin``: the one command-line entry point of the EV battery twin.

Every option has an environment default: options that are settings read ``EVTWIN_<SETTING>``
(see ``.env.example``); the others read the variable their ``--help`` names. Errors are one line on
stderr and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from connectors import KafkaSecurityError, kafka
from connectors.embedded.process import exit_when_orphaned
from schemas.errors import EvTwinError
from streams.errors import CliError
from streams.runtime.logs import configure_logging
from streams.settings import Settings


class OptionAdder:
    """Adds options whose defaults come from the environment, with help that names the variable."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ

    def setting(self, parser: argparse.ArgumentParser, flag: str | tuple[str, ...], field: str, help: str,
                **kwargs: Any) -> None:
        """An option that overrides the setting ``field`` (env ``EVTWIN_<FIELD>``); ``flag`` may
        name several spellings (the first is the one shown first)."""
        info = Settings.model_fields[field]
        default = info.default if info.default_factory is None else "see --help of evtwin"
        flags = (flag,) if isinstance(flag, str) else flag
        parser.add_argument(*flags, dest=field, default=None,
                            help=f"{help} (env EVTWIN_{field.upper()}; default: {default})", **kwargs)

    def env(self, parser: argparse.ArgumentParser, flag: str, var: str, help: str, *,
            default: Any = None, type: Callable[[str], Any] = str, **kwargs: Any) -> None:
        """An option with its own environment variable ``var``."""
        raw = self.environ.get(var)
        value = default
        if raw is not None:
            try:
                value = type(raw)
            except ValueError:
                raise CliError(f"{var}={raw!r} is not a valid value for {flag}") from None
        parser.add_argument(flag, default=value, type=type,
                            help=f"{help} (env {var}; default: {default})", **kwargs)

    def flag(self, parser: argparse.ArgumentParser, flag: str, var: str, help: str) -> None:
        """A boolean switch, also on when ``var`` is 1/true/yes."""
        on = self.environ.get(var, "").lower() in ("1", "true", "yes", "on")
        parser.add_argument(flag, action="store_true", default=on, help=f"{help} (env {var}=1)")


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    from streams.cli import (
        api_cmd,
        bench_cmd,
        data_cmd,
        export_cmd,
        retrain_cmd,
        sim_cmd,
        sink_cmd,
        stack_cmd,
        topics_cmd,
        train_cmd,
        worker_cmd,
    )

    opt = OptionAdder(environ)
    parser = argparse.ArgumentParser(
        prog="evtwin",
        description="EV Battery Digital Twin: a live twin of a fleet of EV battery packs on Kafka.",
        epilog="Start with `evtwin up` (the whole pipeline on the embedded stack); see README.md.",
    )
    opt.setting(parser, "--state-dir", "state_dir", "directory for service state, logs and stack.json")
    opt.setting(parser, "--log-level", "log_level", "log level",
                choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], type=str.upper)
    opt.setting(parser, "--log-format", "log_format", "log format", choices=["plain", "json"])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    stack_cmd.register(sub, opt)
    topics_cmd.register(sub, opt)
    sim_cmd.register(sub, opt)
    worker_cmd.register(sub, opt)
    sink_cmd.register(sub, opt)
    export_cmd.register(sub, opt)
    data_cmd.register(sub, opt)
    train_cmd.register(sub, opt)
    retrain_cmd.register(sub, opt)
    bench_cmd.register(sub, opt)
    api_cmd.register(sub, opt)
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    """The process's settings: environment (and ``.env``), overridden by command-line options."""
    overrides = {k: v for k, v in vars(args).items() if k in Settings.model_fields and v is not None}
    return Settings(**overrides)


def use_kafka_security(settings: Settings) -> None:
    """Make every Kafka client of this process connect as the settings say (TLS, SASL).

    Raises:
        KafkaSecurityError: the settings cannot work together, a file is missing, or a secured
            connection is asked of the embedded broker (which speaks PLAINTEXT only).
    """
    security = settings.kafka_security()
    if security.protocol != "PLAINTEXT" and settings.kafka_bootstrap_servers is None:
        raise KafkaSecurityError(
            f"EVTWIN_KAFKA_SECURITY_PROTOCOL={security.protocol} is for an external cluster: set "
            "EVTWIN_KAFKA_BOOTSTRAP_SERVERS too (the embedded broker speaks PLAINTEXT only)")
    kafka.use_security(security)


def _validation_message(exc: ValidationError) -> str:
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first["loc"])
    return f"invalid setting EVTWIN_{field.upper()}: {first['msg']}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``evtwin``; return the exit code (0 ok, 1 failure, 2 usage error)."""
    try:
        parser = build_parser(os.environ)
        args = parser.parse_args(argv)
        settings = settings_from(args)
        use_kafka_security(settings)
    except (CliError, KafkaSecurityError) as exc:
        print(f"evtwin: error: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        print(f"evtwin: error: {_validation_message(exc)}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    exit_when_orphaned()  # a pipeline process of `evtwin up` never outlives it for long
    try:
        return int(args.handler(args, settings) or 0)
    except EvTwinError as exc:  # every package's errors: one line, what was wrong and what to do
        print(f"evtwin: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


__all__ = ["CliError", "OptionAdder", "build_parser", "main", "settings_from"]
