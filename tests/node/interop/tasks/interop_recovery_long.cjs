// Holds its job for a minute, so that the recovery interop test
// (tests/test_interop_recovery.py) can kill the worker with SIGKILL while the job is locked.
// The name is unique to that test: the other interop tests never add a job for it.
module.exports = async (payload, helpers) => {
  console.log(`[interop] long job ${helpers.job.id} started`);
  await new Promise((resolve) => setTimeout(resolve, 60_000));
};
