// Parses crontab lines with the real graphile-worker parseCrontab, for tests/test_crons_interop.py.
//
// Reads {"lines": [...], "start": ISO time, "due": n} as JSON on stdin. Each line is parsed as a
// crontab of its own. Prints one result per line: {ok: false, error} when graphile-worker refuses
// it, else the item's identifier, task, options, payload, its time fields' values, and the first
// `due` minutes after `start` (UTC) at which the workers' own matcher fires it.
import { parseCrontab } from "graphile-worker";

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) {
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

function dueTimes(match, start, count) {
  const found = [];
  const ts = new Date(start);
  ts.setUTCSeconds(0, 0);
  // At most about eight years of minutes: enough for any schedule that fires at all.
  for (let i = 0; i < 8 * 366 * 24 * 60 && found.length < count; i++) {
    ts.setUTCMinutes(ts.getUTCMinutes() + 1);
    const digest = {
      min: ts.getUTCMinutes(),
      hour: ts.getUTCHours(),
      date: ts.getUTCDate(),
      month: ts.getUTCMonth() + 1,
      dow: ts.getUTCDay(),
    };
    if (match(digest)) {
      found.push(ts.toISOString());
    }
  }
  return found;
}

const request = JSON.parse(await readStdin());
const results = request.lines.map((line) => {
  try {
    const items = parseCrontab(line);
    if (items.length === 0) {
      return { ok: true, items: 0 };
    }
    const [item] = items;
    const ranges = item.match.parsedCronMatch;
    return {
      ok: true,
      items: items.length,
      identifier: item.identifier,
      task: item.task,
      options: {
        backfillPeriod: item.options.backfillPeriod,
        maxAttempts: item.options.maxAttempts ?? null,
        queueName: item.options.queueName ?? null,
        priority: item.options.priority ?? null,
        jobKey: item.options.jobKey ?? null,
        jobKeyMode: item.options.jobKeyMode ?? null,
      },
      payload: item.payload ?? null,
      values: [ranges.minutes, ranges.hours, ranges.dates, ranges.months, ranges.dows],
      due: dueTimes(item.match, request.start, request.due),
    };
  } catch (e) {
    return { ok: false, error: String(e.message || e) };
  }
});
process.stdout.write(JSON.stringify(results));
