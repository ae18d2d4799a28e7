// Preset for the interop tests' Node worker, which the CLI loads from its working directory
// (tests/node/interop, like ./tasks). It prints two worker events as single lines, so that the
// Python test can tell when the worker has finished its first fetch and which NOTIFY payloads
// it received.
import { EventEmitter } from "node:events";

const events = new EventEmitter();
events.on("worker:getJob:empty", () => {
  console.log("[interop] idle");
});
events.on("pool:listen:notification", ({ message }) => {
  console.log(`[interop] notification ${message.channel} ${message.payload ?? ""}`);
});

export default { worker: { events } };
