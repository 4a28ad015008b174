// What a run of a job does, as the harness's Python workers do it (benchmarks/harness/workloads.py
// perform): compute for work_ms x cpu_share[name] ms (hash the payload, again and again), then
// wait for the rest of work_ms. A poison job always fails.
import { createHash } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";

export const POISON = "poison_workflow";

export async function perform(name, data, cpuShare) {
  if (name === POISON) throw new Error("poison job: this handler always fails");
  const workMs = Number(data?.work_ms || 0);
  if (workMs <= 0) return { ok: true };
  const share = cpuShare?.[name] ?? 0.1;
  const blob = JSON.stringify(data.context || data.variables || data);
  const deadline = performance.now() + workMs * share;
  let digest = "";
  do {
    digest = createHash("sha256").update(blob + digest).digest("hex");
  } while (performance.now() < deadline);
  await sleep(workMs * (1 - share));
  return { ok: true, result: digest.slice(0, 16) };
}
