-- wrk script for tools/models/loadgen.py: POST one fixed body to a V2 infer endpoint and print
-- one machine-readable line. Arguments (after `--`): body file, Content-Type, and the value of
-- Inference-Header-Content-Length for Triton's binary-tensor extension ("" for a JSON body).
-- Latencies come from wrk's own per-request histogram (microseconds).

function init(args)
  local file = assert(io.open(args[1], "rb"))
  wrk.body = file:read("*a")
  file:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = args[2]
  if args[3] ~= nil and args[3] ~= "" then
    wrk.headers["Inference-Header-Content-Length"] = args[3]
  end
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    "wrk-result requests=%d duration_us=%d connect_errors=%d read_errors=%d write_errors=%d " ..
    "status_errors=%d timeouts=%d p50_us=%d p95_us=%d p99_us=%d max_us=%d\n",
    summary.requests, summary.duration, errors.connect, errors.read, errors.write,
    errors.status, errors.timeout, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), latency.max))
end
