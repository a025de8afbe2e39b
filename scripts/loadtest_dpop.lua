-- wrk script for the DPoP scenario of scripts/loadtest.sh: each request
-- carries `Authorization: DPoP <token>` and a `DPoP` proof that no other
-- request carries.
--
--   wrk -t2 -c32 -d10s -s scripts/loadtest_dpop.lua URL -- PROOFS_FILE THREADS
--
-- PROOFS_FILE holds one `token<TAB>proof` a line (from the example's
-- `/proofs`). Thread k of THREADS (wrk's -t) sends lines k+1, k+1+THREADS,
-- ...: no line goes out from two threads. A thread that has sent all of its
-- lines starts over rather than stop: the server refuses those replays
-- (non-2xx), and `reused` in the RESULT line counts them. At the end:
--   RESULT requests=.. duration_us=.. rps=.. p50_us=.. p99_us=.. non2xx=.. errors=.. proofs=.. reused=..

local counter = 0
local threads = {}

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

-- Globals, so that done() can read them from each thread.
n = 0
sent = 0
reused = 0
local auth = {}
local proofs = {}

function init(args)
  local path = args[1] or error("usage: -- PROOFS_FILE THREADS")
  local step = tonumber(args[2] or "1")
  local k = 0
  for line in io.lines(path) do
    if k % step == (tid or 0) then
      local tab = line:find("\t", 1, true)
      if tab then
        n = n + 1
        auth[n] = "DPoP " .. line:sub(1, tab - 1)
        proofs[n] = line:sub(tab + 1)
      end
    end
    k = k + 1
  end
  if n == 0 then error("no proof for thread " .. tostring(tid) .. " in " .. path) end
end

function request()
  sent = sent + 1
  if sent > n then reused = reused + 1 end
  local i = (sent - 1) % n + 1
  return wrk.format(nil, nil, { ["Authorization"] = auth[i], ["DPoP"] = proofs[i] })
end

function done(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout
  local total, again = 0, 0
  for _, t in ipairs(threads) do
    total = total + t:get("n")
    again = again + t:get("reused")
  end
  io.write(string.format(
    "RESULT requests=%d duration_us=%d rps=%.0f p50_us=%d p99_us=%d non2xx=%d errors=%d proofs=%d reused=%d\n",
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99), summary.errors.status, errors, total, again))
end
