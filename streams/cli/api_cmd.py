"""``evtwin api``: the HTTP API, WebSocket streams and web view on the running stack."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from streams.settings import Settings


def register(sub: Any, opt: Any) -> None:
    p = sub.add_parser("api", help="serve the REST API, the WebSocket streams and the web view",
                       description="Serve the twin's REST API (/api/..., OpenAPI docs at /docs), "
                       "the live WebSocket streams (/ws/fleet, /ws/batteries/{id}) and the web "
                       "pages (/) on the running stack (stack.json) or the URL settings.")
    opt.setting(p, "--host", "api_host", "address to listen on")
    opt.setting(p, "--port", "api_port", "port to listen on, 0 = any free", type=int)
    asub = p.add_subparsers(dest="api_action", metavar="ACTION")
    h = asub.add_parser("hash-key", help="print the sha256:<hex> form of an API key for EVTWIN_API_KEYS",
                        description="Print the digest of an API key, the form EVTWIN_API_KEYS holds "
                        "(the key itself is never stored).")
    h.add_argument("key", help="the API key (e.g. from `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)")
    p.set_defaults(handler=run_api)


def run_api(args: argparse.Namespace, settings: Settings) -> int:
    if args.api_action == "hash-key":
        from streams.api.security import hash_key

        print(hash_key(args.key))
        return 0
    from connectors.endpoints import resolve_endpoints
    from streams.api.security import parse_key_hashes
    from streams.api.server import bind, make_server, url_of
    from streams.cli import CliError

    endpoints = resolve_endpoints(settings)
    if not endpoints.database_url:
        raise CliError("no database: set EVTWIN_DATABASE_URL or start the stack with `evtwin services`")
    try:
        parse_key_hashes(settings.api_keys.get_secret_value() if settings.api_keys else None)
        sock = bind(settings.api_host, settings.api_port)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    except RuntimeError as exc:
        raise CliError(str(exc)) from None
    print(f"API on {url_of(sock)} (docs {url_of(sock)}/docs)", file=sys.stderr, flush=True)
    make_server(settings, endpoints, settings.log_level).run(sockets=[sock])
    return 0
