// amqplib as a brokerbench role, written as a plain amqplib user would: one connection with
// TCP_NODELAY on (amqplib's default leaves Nagle's algorithm on, which adds ~40 ms tails to
// small publishes), a ConfirmChannel whose confirms a call awaits, persistent messages on the
// queue the harness names; a worker with prefetch and one ack per message. A failed job is
// published again with its attempts made in a header, then acked (no dead-lettering). No
// reconnection: amqplib has none; a lost connection ends the role (with an error).
import amqp from "amqplib";
import { randomUUID } from "node:crypto";
import { send, now, takeOptions, fail } from "./protocol.mjs";
import { perform } from "./work.mjs";
import { versions } from "./versions.mjs";

const CLIENT = { name: "amqplib-node", runtime: `node ${process.versions.node}`, libraries: versions("amqplib") };
const ATTEMPTS = "bb-attempts";
const MADE = "bb-attempts-made";

async function connect(url) {
  const conn = await amqp.connect(url, { noDelay: true, clientProperties: { connection_name: `brokerbench:amqplib:${process.pid}` } });
  conn.on("error", () => {}); // a "close" follows, handled below
  conn.on("close", (err) => { if (err) fail(`connection closed: ${err.message}`); });
  return conn;
}

export async function open(setup) {
  const options = takeOptions(setup.options, ["amqp_queue", "persistent", "confirms"], CLIENT.name);
  const queue = options.amqp_queue || fail("amqplib-node needs the queue's name (option amqp_queue)");
  const conn = await connect(setup.url);
  if (setup.role === "producer") {
    const confirms = (options.confirms ?? "each") !== "off";
    const ch = confirms ? await conn.createConfirmChannel() : await conn.createChannel();
    ch.on("error", () => {});
    await ch.checkQueue(queue);
    const persistent = options.persistent ?? true;
    return {
      client: CLIENT,
      async publish(jobs) {
        const ids = jobs.map(() => randomUUID());
        const outcomes = await Promise.all(jobs.map((job, i) => new Promise((resolve) => {
          const props = { persistent, messageId: ids[i], type: job.name, contentType: "application/json",
            headers: { [ATTEMPTS]: job.attempts || 1, [MADE]: 0 } };
          const body = Buffer.from(JSON.stringify(job.data));
          try {
            if (!confirms) {
              ch.sendToQueue(queue, body, props);
              resolve(null);
            } else {
              ch.sendToQueue(queue, body, props, (err) => resolve(err ? ["refused", err] : null));
            }
          } catch (err) { // the channel is closed: nothing of this message left
            resolve(["refused", err]);
          }
        })));
        const accepted = jobs.filter((_, i) => outcomes[i] === null);
        if (accepted.length) {
          send({ type: "accepted", seqs: accepted.map((j) => j.seq), ids: ids.filter((_, i) => outcomes[i] === null), t_ns: now() });
        }
        for (const fate of ["refused", "in_doubt"]) {
          // a nack refuses; a channel that closed before confirming leaves the message in doubt
          const mine = jobs.filter((_, i) => outcomes[i] && (/nack/i.test(String(outcomes[i][1])) ? "refused" : "in_doubt") === fate);
          if (mine.length) {
            const err = outcomes[jobs.indexOf(mine[0])][1];
            send({ type: "failed", seqs: mine.map((j) => j.seq), fate, error: String(err?.message || err) });
          }
        }
      },
      consume() {},
      async stop() {
        await ch.close().catch(() => {});
        await conn.close().catch(() => {});
      },
    };
  }
  const report = { completed: 0, failed: 0, retried: 0, lost_lock: 0, redelivered: 0, reconnects: 0 };
  const ch = await conn.createChannel();
  ch.on("error", () => {});
  await ch.checkQueue(queue);
  await ch.prefetch(setup.prefetch || setup.concurrency || 1);
  let tag = null;
  let inFlight = 0;
  let idle = null;
  async function handle(msg) {
    if (msg === null) return; // the broker cancelled the consumer
    inFlight += 1;
    const start = now();
    const headers = msg.properties.headers || {};
    const made = Number(headers[MADE] || 0);
    const attempts = Number(headers[ATTEMPTS] || 1);
    const name = msg.properties.type || "";
    let error = null;
    let data = null;
    try {
      data = JSON.parse(msg.content.toString());
      await perform(name, data, setup.cpu_share);
    } catch (err) {
      error = err;
    }
    const final = !error || data === null || made + 1 >= attempts;
    if (msg.fields.redelivered) report.redelivered += 1;
    send({ type: "ran", id: String(msg.properties.messageId || ""), name, trace: data?.trace ?? null, start_ns: start,
      end_ns: now(), redelivered: msg.fields.redelivered, attempts_made: made, final });
    try {
      if (!final) ch.sendToQueue(queue, msg.content, { ...msg.properties, headers: { ...headers, [MADE]: made + 1 } });
      ch.ack(msg);
      if (!error) report.completed += 1; else if (final) report.failed += 1; else report.retried += 1;
    } catch { // the channel is gone: RabbitMQ requeued the delivery, the run's ack never left
      report.lost_lock += 1;
    }
    inFlight -= 1;
    if (inFlight === 0 && idle) idle();
  }
  return {
    client: CLIENT,
    async publish() { fail("a worker publishes nothing"); },
    consume() {
      ch.consume(queue, (msg) => { handle(msg); }, { noAck: false }).then((ok) => { tag = ok.consumerTag; });
    },
    async stop() {
      if (tag) await ch.cancel(tag).catch(() => {});
      if (inFlight) await new Promise((resolve) => { idle = resolve; });
      await ch.close().catch(() => {});
      await conn.close().catch(() => {});
      send({ type: "done", report });
    },
  };
}
