// A live-stream service on @nats-io/jetstream: reads the bridge's live-stream
// events through its own durable JetStream consumer.
//
// - binds the durable consumer DURABLE (default `live-stream-consumer-node`)
//   filtered to the live-stream family (`<prefix>.video.live_stream.*` and
//   `<prefix>.video.asset.created`), creating it when missing;
// - reads the FastPix-* headers and the JSON payload of each event;
// - acknowledges an event once handled, and naks it with a delay
//   (RETRY_DELAY_MS, default 1000) when handling fails, so it comes again;
// - stops cleanly on SIGTERM or Ctrl-C: the event in hand is finished, the
//   connection drained.
//
//   npm ci
//   FASTPIX_BRIDGE__NATS__URL=nats://127.0.0.1:4222 node live_stream_consumer.mjs
//
// It reads the bridge's own setting names: FASTPIX_BRIDGE__NATS__URL (comma
// separated), FASTPIX_BRIDGE__JETSTREAM__STREAM (FASTPIX),
// FASTPIX_BRIDGE__SUBJECT__PREFIX (fastpix). `--fail-once EVENT_ID`
// (repeatable) makes the first delivery of that event fail, to watch a retry.
//
// Prints one JSON line per delivery on stdout; progress goes to stderr.

import { connect } from "@nats-io/transport-node";
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";

const env = process.env;
const servers = (env.FASTPIX_BRIDGE__NATS__URL ?? "nats://127.0.0.1:4222").split(",");
const stream = env.FASTPIX_BRIDGE__JETSTREAM__STREAM ?? "FASTPIX";
const prefix = env.FASTPIX_BRIDGE__SUBJECT__PREFIX ?? "fastpix";
const durable = env.DURABLE ?? "live-stream-consumer-node";
const retryDelayMs = Number(env.RETRY_DELAY_MS ?? "1000");
const filters = [`${prefix}.video.live_stream.*`, `${prefix}.video.asset.created`];
const HEADERS = [
  "FastPix-Event-Type",
  "FastPix-Event-Id",
  "FastPix-Object-Type",
  "FastPix-Object-Id",
  "FastPix-Workspace-Id",
];

const failOnce = new Set();
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === "--fail-once" && i + 1 < argv.length) failOnce.add(argv[++i]);
}

const log = (text) => process.stderr.write(`${text}\n`);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** What the service knows about each live stream: its last status. */
const streams = new Map();

/** Handles one event; throws when it fails (the caller naks it). */
async function handle(headers, event, delivered) {
  if (failOnce.has(headers["FastPix-Event-Id"]) && delivered === 1) {
    throw new Error("simulated failure of the notification service");
  }
  await sleep(10); // Stand-in for a call to another service.
  const id = headers["FastPix-Object-Id"];
  if (id) streams.set(id, event?.status ?? headers["FastPix-Event-Type"]);
}

let stopping = false;
let messages = null;
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    stopping = true;
    messages?.stop();
  });
}

const nc = await connect({
  servers,
  name: durable,
  maxReconnectAttempts: -1,
  waitOnFirstConnect: true,
});
const jsm = await jetstreamManager(nc);
while (!stopping) {
  try {
    await jsm.consumers.info(stream, durable);
    break;
  } catch (e) {
    try {
      await jsm.consumers.add(stream, {
        durable_name: durable,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        filter_subjects: filters,
        ack_wait: 30_000_000_000, // nanoseconds
      });
      break;
    } catch (e2) {
      log(`cannot bind ${durable} on stream ${stream} (${e2.message}); trying again in 2s`);
      await sleep(2000);
    }
  }
}

if (!stopping) {
  const consumer = await jetstream(nc).consumers.get(stream, durable);
  messages = await consumer.consume({ max_messages: 10 });
  log(`ready: durable consumer \`${durable}\` on stream ${stream} (${filters.join(" ")})`);
  for await (const m of messages) {
    const headers = {};
    for (const name of HEADERS) {
      const value = m.headers?.get(name);
      if (value) headers[name] = value;
    }
    const delivered = m.info.deliveryCount;
    const line = {
      consumer: durable,
      subject: m.subject,
      seq: m.seq,
      delivered,
      event_id: headers["FastPix-Event-Id"] ?? null,
      type: headers["FastPix-Event-Type"] ?? null,
      object_id: headers["FastPix-Object-Id"] ?? null,
    };
    try {
      const event = m.json();
      line.created_at = event?.createdAt ?? null;
      await handle(headers, event, delivered);
      await m.ackAck();
      line.outcome = "handled";
    } catch (e) {
      m.nak(retryDelayMs);
      line.outcome = "retry";
      line.error = e.message;
      line.delay_ms = retryDelayMs;
    }
    process.stdout.write(`${JSON.stringify(line)}\n`);
    if (stopping) break;
  }
}
log("stopping: draining the connection");
await nc.drain();
