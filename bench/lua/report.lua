-- Shared by the bench scripts: done() prints one line, "WRK_JSON {...}", that bench/wrk.py
-- reads. Times are microseconds. errors.status counts answers with a status of 400 or more.
local report = {}

function report.done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      '\nWRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d,"status":%d}}\n',
      summary.requests, summary.duration, summary.bytes,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max, latency.mean,
      e.connect, e.read, e.write, e.timeout, e.status))
end

return report
