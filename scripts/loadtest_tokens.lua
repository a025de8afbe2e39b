-- wrk script for scripts/loadtest.sh: each request carries a different
-- `Authorization: Bearer` token, taken round-robin from a file (one token a
-- line), so that a token pool of N distinct tokens is cycled through.
--
--   wrk -t2 -c32 -d10s -s scripts/loadtest_tokens.lua URL -- TOKENS_FILE [LIMIT]
--
-- LIMIT uses only the first LIMIT tokens of the file. Each wrk thread starts
-- at its own offset in the pool. At the end, one machine-readable line:
--   RESULT requests=.. duration_us=.. rps=.. p50_us=.. p99_us=.. non2xx=.. errors=..

local counter = 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end

local tokens = {}
local n = 0
local i = 0

function init(args)
  local path = args[1] or error("usage: -- TOKENS_FILE [LIMIT]")
  local limit = tonumber(args[2] or "0")
  for line in io.lines(path) do
    if line ~= "" then
      n = n + 1
      tokens[n] = "Bearer " .. line
      if limit > 0 and n >= limit then break end
    end
  end
  if n == 0 then error("no token in " .. path) end
  -- Spread the threads over the pool.
  i = ((tid or 0) * 7919) % n
end

function request()
  i = i % n + 1
  return wrk.format(nil, nil, { ["Authorization"] = tokens[i] })
end

function done(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout
  io.write(string.format(
    "RESULT requests=%d duration_us=%d rps=%.0f p50_us=%d p99_us=%d non2xx=%d errors=%d\n",
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99), summary.errors.status, errors))
end
