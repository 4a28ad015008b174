// Entry point of a contender's role: `node role.mjs bullmq|amqplib`, then the role protocol on
// stdin/stdout (../protocol.py).
import { listen, send, fail, now } from "./protocol.mjs";

const CLIENTS = { bullmq: "./bullmq.mjs", amqplib: "./amqplib.mjs" };
const which = process.argv[2];
if (!CLIENTS[which]) fail(`usage: node role.mjs ${Object.keys(CLIENTS).join("|")}`);
const impl = await import(CLIENTS[which]);

let role = null;
let stopping = false;
listen(async (message) => {
  switch (message.type) {
    case "setup":
      if (role) fail("setup came twice");
      if (message.protocol !== 1) fail(`protocol ${message.protocol}: this role speaks protocol 1`);
      role = await impl.open(message);
      send({ type: "ready", client: role.client, clock_ns: now() });
      return;
    case "publish":
    case "consume":
    case "stop":
      if (!role) fail(`${message.type} before setup`);
      if (message.type === "publish") return role.publish(message.jobs);
      if (message.type === "consume") return role.consume();
      if (!stopping) {
        stopping = true;
        await role.stop();
        process.exit(0);
      }
      return;
    default:
      fail(`unknown message type ${JSON.stringify(message.type)}`);
  }
}, () => process.exit(0)); // the harness is gone: exit at once, settling nothing more
