// Always fails, with a message the Python test finds again in the job's last_error.
module.exports = async (payload) => {
  throw new Error(`interop explode: ${payload.reason}`);
};
