"""A media service on nats-py: reads the bridge's media events through its
own durable JetStream consumer.

- binds the durable consumer DURABLE (default `media-consumer-py`) filtered to
  the media family (`<prefix>.video.media.>`), creating it when missing;
- reads the FastPix-* headers and the JSON payload of each event;
- acknowledges an event once handled, and naks it with a delay (RETRY_DELAY
  seconds, default 1) when handling fails, so it comes again;
- stops cleanly on SIGTERM or Ctrl-C: the event in hand is finished, the
  rest of the batch is handed back, the connection drained.

    pip install nats-py
    FASTPIX_BRIDGE__NATS__URL=nats://127.0.0.1:4222 python examples/python/media_consumer.py

It reads the bridge's own setting names: FASTPIX_BRIDGE__NATS__URL (comma
separated), FASTPIX_BRIDGE__JETSTREAM__STREAM (FASTPIX),
FASTPIX_BRIDGE__SUBJECT__PREFIX (fastpix). `--fail-once EVENT_ID` (repeatable)
makes the first delivery of that event fail, to watch a retry.
`--healthcheck` exits 0 once the durable consumer exists, 1 otherwise (for a
container healthcheck).

Prints one JSON line per delivery on stdout; progress goes to stderr.
"""

import argparse
import asyncio
import json
import os
import signal
import sys

import nats
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

HEADERS = (
    "FastPix-Event-Type",
    "FastPix-Event-Id",
    "FastPix-Object-Type",
    "FastPix-Object-Id",
    "FastPix-Workspace-Id",
)


def log(text):
    print(text, file=sys.stderr, flush=True)


class MediaService:
    def __init__(self, durable, fail_once):
        self.durable = durable
        self.fail_once = set(fail_once)
        self.ready_media = set()

    async def handle(self, headers, event, delivered):
        """Handles one event; raises when it fails (the caller naks it)."""
        event_id = headers.get("FastPix-Event-Id")
        if event_id in self.fail_once and delivered == 1:
            raise RuntimeError("simulated failure of the thumbnail service")
        # Stand-in for a call to another service.
        await asyncio.sleep(0.01)
        if headers.get("FastPix-Event-Type") == "video.media.ready":
            self.ready_media.add(headers.get("FastPix-Object-Id"))


async def connect(urls):
    while True:
        try:
            return await nats.connect(
                servers=urls,
                name="media-consumer-py",
                max_reconnect_attempts=-1,
                connect_timeout=2,
            )
        except Exception as e:  # NATS not up yet: try again.
            log(f"cannot reach NATS at {', '.join(urls)} ({e}); trying again in 2s")
            await asyncio.sleep(2)


async def bind(js, stream, durable, subject):
    config = ConsumerConfig(
        durable_name=durable,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        filter_subject=subject,
        ack_wait=30,
    )
    while True:
        try:
            return await js.pull_subscribe(
                subject, durable=durable, stream=stream, config=config
            )
        except NotFoundError:
            log(f"stream {stream} does not exist yet (the bridge creates it); trying again in 2s")
            await asyncio.sleep(2)


DEFAULT_DURABLE = "media-consumer-py"


async def healthcheck(urls, stream, durable):
    try:
        nc = await nats.connect(servers=urls, connect_timeout=2, max_reconnect_attempts=0)
        try:
            await nc.jetstream().consumer_info(stream, durable)
        finally:
            await nc.close()
    except Exception as e:
        print(f"unhealthy: durable consumer `{durable}` on stream {stream}: {e!r}", file=sys.stderr)
        return 1
    return 0


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fail-once", action="append", default=[], metavar="EVENT_ID")
    parser.add_argument("--healthcheck", action="store_true")
    args = parser.parse_args()

    urls = os.environ.get("FASTPIX_BRIDGE__NATS__URL", "nats://127.0.0.1:4222").split(",")
    stream = os.environ.get("FASTPIX_BRIDGE__JETSTREAM__STREAM", "FASTPIX")
    prefix = os.environ.get("FASTPIX_BRIDGE__SUBJECT__PREFIX", "fastpix")
    durable = os.environ.get("DURABLE", DEFAULT_DURABLE)
    retry_delay = float(os.environ.get("RETRY_DELAY", "1"))
    subject = f"{prefix}.video.media.>"
    if args.healthcheck:
        return await healthcheck(urls, stream, durable)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    nc = await connect(urls)
    sub = await bind(nc.jetstream(), stream, durable, subject)
    log(f"ready: durable consumer `{durable}` on stream {stream} ({subject})")
    service = MediaService(durable, args.fail_once)

    while not stop.is_set():
        try:
            batch = await sub.fetch(batch=10, timeout=1)
        except NatsTimeout:
            continue
        except Exception as e:  # NATS restarting: the next fetch tries again.
            log(f"fetch failed ({e}); trying again")
            await asyncio.sleep(1)
            continue
        for i, msg in enumerate(batch):
            if stop.is_set():
                # Hand the rest back at once for the next run or another copy.
                for rest in batch[i:]:
                    await rest.nak()
                break
            headers = {k: v for k, v in (msg.headers or {}).items() if k in HEADERS}
            meta = msg.metadata
            delivered = meta.num_delivered
            line = {
                "consumer": durable,
                "subject": msg.subject,
                "seq": meta.sequence.stream,
                "delivered": delivered,
                "event_id": headers.get("FastPix-Event-Id"),
                "type": headers.get("FastPix-Event-Type"),
                "object_id": headers.get("FastPix-Object-Id"),
            }
            try:
                event = json.loads(msg.data)
                line["created_at"] = event.get("createdAt") if isinstance(event, dict) else None
                await service.handle(headers, event, delivered)
            except Exception as e:
                await msg.nak(delay=retry_delay)
                line.update(outcome="retry", error=str(e), delay=retry_delay)
            else:
                await msg.ack_sync()
                line["outcome"] = "handled"
            print(json.dumps(line), flush=True)

    log("stopping: closing the connection")
    # Acknowledgements were confirmed (ack_sync); naks reach the server with
    # the flush. (A drain would wait on the pull subscription's inbox.)
    await sub.unsubscribe()
    await nc.flush()
    await nc.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
