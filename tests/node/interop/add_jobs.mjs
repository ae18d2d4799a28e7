// Adds jobs with the real graphile-worker API, for the interop tests.
//
// Reads {"jobs": [...], "batch": [...]} as JSON on stdin. Each entry is {identifier, payload,
// spec} where spec uses the Node option names (queueName, runAt as an ISO string, maxAttempts,
// jobKey, jobKeyMode, priority, flags). "jobs" go through workerUtils.addJob one by one, "batch"
// through one workerUtils.addJobs call. Prints {"jobs": [ids], "batch": [ids]} on stdout.
// The connection comes from env DATABASE_URL and the schema from env GRAPHILE_WORKER_SCHEMA.
import { makeWorkerUtils } from "graphile-worker";

function nodeSpec(spec = {}) {
  return { ...spec, runAt: spec.runAt == null ? undefined : new Date(spec.runAt) };
}

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) {
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

const request = JSON.parse(await readStdin());
const utils = await makeWorkerUtils({
  connectionString: process.env.DATABASE_URL,
  schema: process.env.GRAPHILE_WORKER_SCHEMA,
});
try {
  const jobs = [];
  for (const { identifier, payload, spec } of request.jobs ?? []) {
    const job = await utils.addJob(identifier, payload, nodeSpec(spec));
    jobs.push(String(job.id));
  }
  const batch = request.batch?.length
    ? await utils.addJobs(
        request.batch.map(({ identifier, payload, spec }) => ({
          identifier,
          payload,
          ...nodeSpec(spec),
        })),
      )
    : [];
  process.stdout.write(JSON.stringify({ jobs, batch: batch.map((job) => String(job.id)) }));
} finally {
  await utils.release();
}
