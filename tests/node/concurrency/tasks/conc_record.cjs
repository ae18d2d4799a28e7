// For tests/test_concurrency.py: records each run of a job as a "start" line (before the work)
// and an "end" line (after it) in the file named by env CONCURRENCY_OUTPUT, and holds the job
// for payload.ms milliseconds meanwhile, so that the console's actions race jobs a live worker
// holds. The test counts the "start" lines per job id: every job must run at most once.
const fs = require("node:fs");

module.exports = async (payload, helpers) => {
  const line = (event) =>
    JSON.stringify({ id: String(helpers.job.id), event, worker: helpers.job.locked_by }) + "\n";
  fs.appendFileSync(process.env.CONCURRENCY_OUTPUT, line("start"));
  await new Promise((resolve) => setTimeout(resolve, payload.ms ?? 100));
  fs.appendFileSync(process.env.CONCURRENCY_OUTPUT, line("end"));
};
