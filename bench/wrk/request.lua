-- wrk script for bench/run.sh: one fixed request, built from the environment,
-- and a count of answers that are not 200.
--
--   BENCH_METHOD  GET (default) or POST
--   BENCH_AUTH    value of the Authorization header (optional)
--   BENCH_BODY    form body for POST (application/x-www-form-urlencoded)
--
-- done() prints `non-200 responses: N` (and the first such status), which
-- bench/run.sh reads; a run with any is reported as invalid.

wrk.method = os.getenv("BENCH_METHOD") or "GET"
local auth = os.getenv("BENCH_AUTH")
if auth and auth ~= "" then
  wrk.headers["Authorization"] = auth
end
local body = os.getenv("BENCH_BODY")
if body and body ~= "" then
  wrk.body = body
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  non200 = 0
  first_bad = 0
end

function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
    if first_bad == 0 then
      first_bad = status
    end
  end
end

function done(summary, latency, requests)
  local total, first = 0, 0
  for _, t in ipairs(threads) do
    total = total + t:get("non200")
    local f = t:get("first_bad")
    if first == 0 and f ~= 0 then
      first = f
    end
  end
  io.write(string.format("non-200 responses: %d (first status %d)\n", total, first))
  io.write(string.format("socket errors: connect %d, read %d, write %d, timeout %d\n",
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout))
end
