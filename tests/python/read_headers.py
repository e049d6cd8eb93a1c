"""Reads one stored message back with nats-py, as a new user of the client
would, and prints its headers as JSON on stdout.

usage: read_headers.py NATS_URL STREAM SEQ

Two reads, since nats-py parses headers differently on each path:
  "get_msg": the stream's message-get API (JetStreamManager.get_msg),
  "fetch":   a pull consumer on the message's subject (the usual consumer path).
A value that does not come back as a plain string is printed as its repr, so
the test shows what the client made of it.
"""

import asyncio
import json
import sys

import nats


def as_json(headers):
    return {
        name: value if isinstance(value, str) else repr(value)
        for name, value in (headers or {}).items()
    }


async def main(url, stream, seq):
    nc = await nats.connect(url, connect_timeout=10, max_reconnect_attempts=0)
    try:
        js = nc.jetstream(timeout=10)
        stored = await js.get_msg(stream, seq)
        sub = await js.pull_subscribe(stored.subject, stream=stream)
        fetched = await sub.fetch(1, timeout=10)
        print(
            json.dumps(
                {
                    "subject": stored.subject,
                    "get_msg": as_json(stored.headers),
                    "fetch": as_json(fetched[0].headers),
                }
            )
        )
    finally:
        await nc.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
