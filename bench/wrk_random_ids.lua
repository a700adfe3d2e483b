-- wrk script: GET <prefix><id> for ids drawn uniformly from [first, last], counting every
-- response that is not a 200 (wrk itself only counts statuses >= 400: a 302 to the sign-in
-- page would pass as a fast success) and every response that signs the session cookie again
-- (wrk does not keep cookies, so a browser would pay for that once, wrk on every request).
--
--   wrk ... -s bench/wrk_random_ids.lua http://127.0.0.1:PORT -- /staff/accounts/ 1 100000 [seed]
--
-- Each thread seeds its generator with seed + thread number, so two runs with the same
-- arguments request the same ids in the same order (the page and the reference route see
-- the same distribution). done() prints one line the runner parses:
--   BENCH non200=<n> statuses=<code:count,...> requests=<n> set_cookie=<n> duration_us=<n> ...

local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("number", counter)
  table.insert(threads, thread)
end

function init(args)
  prefix = args[1] or "/"
  first = tonumber(args[2] or "1")
  last = tonumber(args[3] or "1")
  local seed = tonumber(args[4] or "2026")
  math.randomseed(seed + number)
  non200 = 0
  set_cookie = 0
  statuses = {}
end

function request()
  return wrk.format("GET", prefix .. math.random(first, last))
end

function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
    statuses[status] = (statuses[status] or 0) + 1
  end
  if headers["Set-Cookie"] or headers["set-cookie"] then
    set_cookie = set_cookie + 1
  end
end

function done(summary, latency, requests)
  local bad, resigned = 0, 0
  local merged = {}
  for _, thread in ipairs(threads) do
    bad = bad + thread:get("non200")
    resigned = resigned + thread:get("set_cookie")
    for code, n in pairs(thread:get("statuses")) do
      merged[code] = (merged[code] or 0) + n
    end
  end
  local parts = {}
  for code, n in pairs(merged) do
    table.insert(parts, code .. ":" .. n)
  end
  io.write(string.format(
    "BENCH non200=%d statuses=%s requests=%d set_cookie=%d duration_us=%d p50_us=%d p99_us=%d\n",
    bad, table.concat(parts, ","), summary.requests, resigned, summary.duration,
    latency:percentile(50), latency:percentile(99)))
end
