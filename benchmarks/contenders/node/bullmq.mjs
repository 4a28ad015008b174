// The official BullMQ (with ioredis) as a brokerbench role: a Queue that adds what the harness
// sends, or a Worker that runs the seed's job types. Written as the seed's service would use it:
// one add per call (addBulk for a batch), BullMQ's default lock and stalled-check settings unless
// the harness passes recovery settings, removeOnComplete as brokerbench's own adapter does.
import { Queue, Worker } from "bullmq";
import { Redis } from "ioredis";
import { send, now, takeOptions, fail } from "./protocol.mjs";
import { perform } from "./work.mjs";
import { versions } from "./versions.mjs";

const WORKER_OPTIONS = { lock_duration_ms: "lockDuration", stalled_interval_ms: "stalledInterval",
  max_stalled_count: "maxStalledCount" };
const CLIENT = { name: "bullmq-node", runtime: `node ${process.versions.node}`,
  libraries: versions("bullmq", "ioredis") };

function connect(url, forWorker) {
  if (!/^rediss?:\/\//.test(url)) fail(`bullmq-node takes a redis:// URL, not ${url.split(":")[0]}://`);
  // A worker's connection must wait for blocking commands as long as they take (BullMQ's rule);
  // a producer's fails a call after ioredis's default retries (the add is then in doubt).
  return new Redis(url, forWorker ? { maxRetriesPerRequest: null } : {});
}

// A Redis error reply means the add did not run (Redis runs a script whole or refuses it:
// OOM, READONLY, a wrong password); anything else (a dropped connection) leaves it in doubt.
function fate(err) {
  return /^(OOM|READONLY|NOAUTH|WRONGPASS|ERR)\b/.test(err?.message || "") ? "refused" : "in_doubt";
}

export async function open(setup) {
  const options = takeOptions(setup.options, Object.keys(WORKER_OPTIONS), CLIENT.name);
  if (setup.role === "producer") {
    const connection = connect(setup.url, false);
    connection.on("error", () => {}); // reported per call
    const queue = new Queue(setup.queue, { connection });
    await queue.waitUntilReady();
    return {
      client: CLIENT,
      async publish(jobs) {
        const seqs = jobs.map((j) => j.seq);
        const opts = (j) => ({ attempts: j.attempts || 1, removeOnComplete: true, ...(j.id ? { jobId: j.id } : {}) });
        try {
          const added = jobs.length === 1
            ? [await queue.add(jobs[0].name, jobs[0].data, opts(jobs[0]))]
            : await queue.addBulk(jobs.map((j) => ({ name: j.name, data: j.data, opts: opts(j) })));
          send({ type: "accepted", seqs, ids: added.map((job) => String(job.id)), t_ns: now() });
        } catch (err) {
          send({ type: "failed", seqs, fate: fate(err), error: String(err?.message || err) });
        }
      },
      consume() {},
      async stop() {
        await queue.close();
      },
    };
  }
  const report = { completed: 0, failed: 0, retried: 0, lost_lock: 0, redelivered: 0, reconnects: 0 };
  const finals = new Map();
  const connection = connect(setup.url, true);
  connection.on("reconnecting", () => { report.reconnects += 1; });
  connection.on("error", () => {});
  const settings = { connection, concurrency: setup.concurrency || 1, autorun: false };
  for (const [ours, theirs] of Object.entries(WORKER_OPTIONS)) {
    if (options[ours] !== undefined) settings[theirs] = options[ours];
  }
  const worker = new Worker(setup.queue, async (job) => {
    const start = now();
    // attemptsStarted counts every time the job was taken; more than the failed attempts + this
    // one means an earlier run never settled (its lock expired: the stalled check put it back).
    const redelivered = (job.attemptsStarted || 0) > job.attemptsMade + 1;
    if (redelivered) report.redelivered += 1;
    let error = null;
    try {
      await perform(job.name, job.data, setup.cpu_share);
    } catch (err) {
      error = err;
    }
    const final = !error || job.attemptsMade + 1 >= (job.opts.attempts || 1);
    finals.set(job.id, final);
    send({ type: "ran", id: String(job.id), name: job.name, trace: job.data?.trace ?? null, start_ns: start,
      end_ns: now(), redelivered, attempts_made: job.attemptsMade, final });
    if (error) throw error;
  }, settings);
  worker.on("completed", () => { report.completed += 1; });
  worker.on("failed", (job) => {
    if (!job) return;
    if (finals.get(job.id)) report.failed += 1; else report.retried += 1;
    finals.delete(job.id);
  });
  worker.on("error", (err) => {
    if (/Missing lock|lock mismatch/i.test(err?.message || "")) report.lost_lock += 1;
    else send({ type: "error", message: `worker: ${err?.message || err}`, fatal: false });
  });
  await worker.waitUntilReady();
  let running = null;
  return {
    client: CLIENT,
    async publish() { fail("a worker publishes nothing"); },
    consume() { running = worker.run(); },
    async stop() {
      await worker.close();
      await running;
      send({ type: "done", report });
    },
  };
}
