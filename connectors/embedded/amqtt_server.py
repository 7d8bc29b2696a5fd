"""Run the amqtt MQTT broker on a loopback port: ``python -m connectors.embedded.amqtt_server --port N``.

The embedded stack starts this as a child process (see :mod:`connectors.embedded.mqtt_broker`), so the
broker gets the same lifecycle as the other services.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal


async def _serve(host: str, port: int) -> None:
    from amqtt.broker import Broker

    broker = Broker(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
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
    print(f"amqtt listening on {host}:{port}", flush=True)
    await stop.wait()
    try:  # amqtt's shutdown can wait on a lingering client session for good; bound it
        await asyncio.wait_for(broker.shutdown(), timeout=3.0)
    except Exception as exc:  # noqa: BLE001 - a timeout or a failing shutdown: exiting anyway
        print(f"amqtt: shutdown cut short ({type(exc).__name__})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(_serve(args.host, args.port))


if __name__ == "__main__":
    main()
