// Records each job it runs as one JSON line in the file named by env INTEROP_OUTPUT, so the
// Python test can check that every job ran exactly once and with the payload it stored.
const fs = require("node:fs");

module.exports = async (payload, helpers) => {
  const line = JSON.stringify({
    id: String(helpers.job.id),
    task_identifier: helpers.job.task_identifier,
    attempts: helpers.job.attempts,
    payload,
  });
  fs.appendFileSync(process.env.INTEROP_OUTPUT, line + "\n");
};
