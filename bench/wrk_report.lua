-- wrk script for bench/http.py: GET /order/<uid> for random uids read from the file named
-- after `--` (one uid a line), and one machine-readable summary line at the end.
--   wrk -t1 -c64 -d8s --latency -s bench/wrk_report.lua http://127.0.0.1:PORT -- uids.txt

local uids = {}

function init(args)
  for line in io.lines(args[1]) do
    uids[#uids + 1] = line
  end
  math.randomseed(os.time() + #uids)
end

function request()
  return wrk.format("GET", "/order/" .. uids[math.random(#uids)])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "p50_us": %.0f, "p99_us": %.0f, ' ..
    '"p999_us": %.0f, "max_us": %.0f, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency:percentile(99.9), latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
