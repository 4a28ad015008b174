// amqplib as a brokerbench role, written as a plain amqplib user would: one connection with
// TCP_NODELAY on (amqplib's default leaves Nagle's algorithm on, which adds ~40 ms tails to
// small publishes), a ConfirmChannel whose confirms a call awaits, persistent messages on the
// queue the harness names; a worker with prefetch and one ack per message. A failed job is
// published again with its attempts made in a header, then acked (no dead-lettering).
//
// Reconnection: amqplib has none, so every application writes its own; this role's is the
// plain one: when the connection closes, connect again every 0.5 s for up to reconnect_for_s
// (the harness's window, 10 s unless a scenario gives more), open the channel again and, for a
// worker, consume again. Publishes whose confirm had not come are in doubt; a worker's runs
// whose ack could not leave count lost_lock (RabbitMQ requeued those deliveries). Past the
// window the role ends with an error.
import amqp from "amqplib";
import { randomUUID } from "node:crypto";
import { send, now, takeOptions, fail } from "./protocol.mjs";
import { perform } from "./work.mjs";
import { versions } from "./versions.mjs";

const CLIENT = { name: "amqplib-node", runtime: `node ${process.versions.node}`, libraries: versions("amqplib") };
const ATTEMPTS = "bb-attempts";
const MADE = "bb-attempts-made";
const RETRY_EVERY_MS = 500;
const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

// A connection and one channel that come back after the broker drops them. channel() gives the
// open channel, waiting while a reconnection is under way; onOpen(ch) runs on every new channel.
class Link {
  constructor(url, windowS, confirms, onOpen) {
    Object.assign(this, { url, windowS, confirms, onOpen, ch: null, conn: null, closing: false, reconnects: 0 });
    this.opening = null;
  }

  async channel() {
    if (this.ch) return this.ch;
    if (!this.opening) this.opening = this.open().finally(() => { this.opening = null; });
    return this.opening;
  }

  async open() {
    const deadline = Date.now() + this.windowS * 1000;
    for (let first = this.conn === null && this.reconnects === 0; ; first = false) {
      try {
        const conn = await amqp.connect(this.url, { noDelay: true,
          clientProperties: { connection_name: `brokerbench:amqplib:${process.pid}` } });
        conn.on("error", () => {}); // a "close" follows
        const ch = this.confirms ? await conn.createConfirmChannel() : await conn.createChannel();
        ch.on("error", () => {});
        conn.on("close", () => this.lost(conn));
        ch.on("close", () => { if (this.ch === ch) { this.ch = null; conn.close().catch(() => {}); } });
        await this.onOpen(ch);
        this.conn = conn;
        this.ch = ch;
        return ch;
      } catch (err) {
        if (first || this.closing || Date.now() >= deadline) {
          fail(`${first ? "cannot connect" : `no connection again within ${this.windowS} s`}: ${err?.message || err}`);
        }
        await sleep(RETRY_EVERY_MS);
      }
    }
  }

  lost(conn) {
    if (this.conn !== conn || this.closing) return;
    this.conn = null;
    this.ch = null;
    this.reconnects += 1;
    this.channel().catch(() => {}); // a worker consumes again as soon as it can
  }

  async close() {
    this.closing = true;
    const { ch, conn } = this;
    if (ch) await ch.close().catch(() => {});
    if (conn) await conn.close().catch(() => {});
  }
}

export async function open(setup) {
  const options = takeOptions(setup.options, ["amqp_queue", "persistent", "confirms", "reconnect_for_s"], CLIENT.name);
  const queue = options.amqp_queue || fail("amqplib-node needs the queue's name (option amqp_queue)");
  const windowS = Number(options.reconnect_for_s ?? 10);
  if (setup.role === "producer") return producer(setup, options, queue, windowS);
  return worker(setup, queue, windowS);
}

async function producer(setup, options, queue, windowS) {
  const confirms = (options.confirms ?? "each") !== "off";
  const persistent = options.persistent ?? true;
  const link = new Link(setup.url, windowS, confirms, (ch) => ch.checkQueue(queue));
  await link.channel();
  return {
    client: CLIENT,
    async publish(jobs) {
      const ids = jobs.map((job) => job.id || randomUUID());
      const ch = await link.channel();
      const outcomes = await Promise.all(jobs.map((job, i) => new Promise((resolve) => {
        const props = { persistent, messageId: ids[i], type: job.name, contentType: "application/json",
          headers: { [ATTEMPTS]: job.attempts || 1, [MADE]: 0 } };
        const body = Buffer.from(JSON.stringify(job.data));
        try {
          if (!confirms) {
            ch.sendToQueue(queue, body, props);
            resolve(null);
          } else {
            ch.sendToQueue(queue, body, props, (err) => resolve(err ? ["confirm", err] : null));
          }
        } catch (err) { // the channel closed before this message left: nothing of it reached the broker
          resolve(["refused", err]);
        }
      })));
      const accepted = jobs.filter((_, i) => outcomes[i] === null);
      if (accepted.length) {
        send({ type: "accepted", seqs: accepted.map((j) => j.seq), ids: ids.filter((_, i) => outcomes[i] === null), t_ns: now() });
      }
      // a nack refuses; a channel that closed before confirming leaves the message in doubt
      const fateOf = (o) => (o[0] === "refused" || /nack/i.test(String(o[1]?.message || o[1])) ? "refused" : "in_doubt");
      for (const fate of ["refused", "in_doubt"]) {
        const mine = jobs.filter((_, i) => outcomes[i] && fateOf(outcomes[i]) === fate);
        if (mine.length) {
          const err = outcomes[jobs.indexOf(mine[0])][1];
          send({ type: "failed", seqs: mine.map((j) => j.seq), fate, error: String(err?.message || err) });
        }
      }
    },
    consume() {},
    async stop() { await link.close(); },
  };
}

async function worker(setup, queue, windowS) {
  const report = { completed: 0, failed: 0, retried: 0, lost_lock: 0, redelivered: 0, reconnects: 0 };
  let consuming = false;
  let inFlight = 0;
  let idle = null;
  const consumers = new Map(); // channel -> consumer tag

  async function handle(ch, msg) {
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

  async function onOpen(ch) {
    await ch.checkQueue(queue);
    await ch.prefetch(setup.prefetch || setup.concurrency || 1);
    if (consuming) {
      const ok = await ch.consume(queue, (msg) => { handle(ch, msg); }, { noAck: false });
      consumers.set(ch, ok.consumerTag);
    }
  }

  const link = new Link(setup.url, windowS, false, onOpen);
  await link.channel();
  return {
    client: CLIENT,
    async publish() { fail("a worker publishes nothing"); },
    async consume() {
      consuming = true;
      await onOpen(await link.channel());
    },
    async stop() {
      consuming = false;
      const ch = link.ch;
      if (ch && consumers.has(ch)) await ch.cancel(consumers.get(ch)).catch(() => {});
      if (inFlight) await new Promise((resolve) => { idle = resolve; });
      report.reconnects = link.reconnects;
      await link.close();
      send({ type: "done", report });
    },
  };
}
