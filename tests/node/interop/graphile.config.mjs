// Preset for the interop tests' Node worker (passed with --config): it prints two worker
// events as single lines, so that the Python test can tell when the worker has finished its
// first fetch and what NOTIFY payload it received.
import { EventEmitter } from "node:events";

const events = new EventEmitter();
events.on("worker:getJob:empty", () => {
  console.log("[interop] idle");
});
events.on("pool:listen:notification", ({ message }) => {
  console.log(`[interop] notification ${message.channel} ${message.payload ?? ""}`);
});

export default { worker: { events } };
