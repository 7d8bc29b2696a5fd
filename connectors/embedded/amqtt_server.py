"""Run the amqtt MQTT broker on a loopback port: ``python -m connectors.embedded.amqtt_server --port N``
(``--certfile C --keyfile K``: MQTT over TLS).

The embedded stack starts this as a child process (see :mod:`connectors.embedded.mqtt_broker`), so the
broker gets the same lifecycle as the other services.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal


async def _serve(host: str, port: int, certfile: str | None = None, keyfile: str | None = None) -> None:
    from amqtt.broker import Broker

    listener: dict[str, object] = {"type": "tcp", "bind": f"{host}:{port}"}
    if certfile:  # MQTT over TLS (mqtts://) with this certificate
        listener.update(ssl=True, certfile=certfile, keyfile=keyfile)
    broker = Broker(
        {
            "listeners": {"default": listener},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            },
        }
    )
    await broker.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"amqtt listening on {host}:{port}{' (TLS)' if certfile else ''}", flush=True)
    await stop.wait()
    try:  # amqtt's shutdown can wait on a lingering client session for good; bound it
        await asyncio.wait_for(broker.shutdown(), timeout=3.0)
    except Exception as exc:  # noqa: BLE001 - a timeout or a failing shutdown: exiting anyway
        print(f"amqtt: shutdown cut short ({type(exc).__name__})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--certfile", help="PEM certificate (chain): listen with TLS (mqtts)")
    parser.add_argument("--keyfile", help="PEM private key of --certfile")
    args = parser.parse_args()
    if bool(args.certfile) != bool(args.keyfile):
        parser.error("--certfile and --keyfile go together")
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(_serve(args.host, args.port, args.certfile, args.keyfile))


if __name__ == "__main__":
    main()
