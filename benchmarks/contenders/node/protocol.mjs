// The role protocol's plumbing on Node (the protocol itself: ../protocol.py): JSON lines in on
// stdin, out on stdout. Writes to a pipe are synchronous on Linux, so a line is out before the
// next statement runs (a "ran" line precedes the job's settlement, as the protocol asks).
import { createInterface } from "node:readline";

export const now = () => process.hrtime.bigint(); // CLOCK_MONOTONIC, the harness's clock

export function send(message) {
  process.stdout.write(JSON.stringify(message, (_, v) => (typeof v === "bigint" ? Number(v) : v)) + "\n");
}

export function fail(message, fatal = true) {
  send({ type: "error", message: String(message), fatal });
  if (fatal) process.exit(1);
}

// Calls onMessage(message) for every line, one after the other (a message waits until the
// previous one's handling is over); onEnd() when the harness closes stdin.
export function listen(onMessage, onEnd) {
  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
  let previous = Promise.resolve();
  lines.on("line", (line) => {
    if (!line.trim()) return;
    let message;
    try {
      message = JSON.parse(line);
    } catch {
      fail(`not a JSON line: ${line.slice(0, 200)}`);
    }
    previous = previous.then(() => onMessage(message)).catch((err) => fail(err?.stack || err));
  });
  lines.on("close", onEnd);
}

// Options a role takes; any other key is refused by name (the protocol: a role refuses a
// setting it does not know).
export function takeOptions(options, known, client) {
  const unknown = Object.keys(options || {}).filter((k) => !known.includes(k));
  if (unknown.length) {
    fail(`${client} has no option ${unknown.join(", ")}; it takes ${known.join(", ") || "none"}`);
  }
  return options || {};
}
