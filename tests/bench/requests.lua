-- Cycles pre-signed webhook requests (one per line: id TAB timestamp TAB signature TAB body).
-- Each wrk thread takes every n-th line, so no two threads send the same event.
-- Usage: wrk -s requests.lua URL -- <requests file> <threads>
local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local path = args[1]
  local nthreads = tonumber(args[2])
  reqs = {}
  wrapped = 0
  idx = 0
  local i = 0
  for line in io.lines(path) do
    if i % nthreads == tid then
      local id, ts, sig, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
      reqs[#reqs + 1] = wrk.format("POST", wrk.path, {
        ["Content-Type"] = "application/json",
        ["X-Webhook-Id"] = id,
        ["Idempotency-Key"] = id,
        ["X-Webhook-Event"] = "song.completed",
        ["X-Webhook-Timestamp"] = ts,
        ["X-Webhook-Signature"] = sig,
      }, body)
    end
    i = i + 1
  end
end

function request()
  idx = idx + 1
  if idx > #reqs then
    idx = 1
    wrapped = wrapped + 1
  end
  return reqs[idx]
end

function done(summary, latency, requests)
  local wraps = 0
  for _, thread in ipairs(threads) do
    wraps = wraps + thread:get("wrapped")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "non_2xx": %d, "connect_errors": %d, ' ..
    '"read_errors": %d, "write_errors": %d, "timeouts": %d, "p50_us": %d, "p90_us": %d, ' ..
    '"p99_us": %d, "max_us": %d, "wrapped": %d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, wraps))
end
