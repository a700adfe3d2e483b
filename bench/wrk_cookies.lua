-- wrk script: GET <path> as one of many signed-in users, a session cookie drawn uniformly at
-- random for each request, counting every response that is not a 200 (wrk itself only counts
-- statuses >= 400: a 302 to the sign-in page would pass as a fast success) and every response
-- that signs the session cookie again.
--
--   wrk ... -s bench/wrk_cookies.lua http://127.0.0.1:PORT -- /home <cookie file> [seed]
--
-- The cookie file holds one accord_session value a line (bench/run.py mints them). The requests
-- are formatted once per thread; each thread seeds its generator with seed + thread number.
-- done() prints one line the runner parses:
--   BENCH non200=<n> statuses=<code:count,...> requests=<n> set_cookie=<n> users=<n> ...

local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("number", counter)
  table.insert(threads, thread)
end

function init(args)
  local path = args[1] or "/"
  local file = assert(io.open(args[2], "r"), "cannot open the cookie file " .. tostring(args[2]))
  local seed = tonumber(args[3] or "2026")
  requests = {}
  for line in file:lines() do
    if line ~= "" then
      table.insert(requests, wrk.format("GET", path, {["Cookie"] = "accord_session=" .. line}))
    end
  end
  file:close()
  assert(#requests > 0, "no cookie in " .. args[2])
  users = #requests
  math.randomseed(seed + number)
  non200 = 0
  set_cookie = 0
  statuses = {}
end

function request()
  return requests[math.random(#requests)]
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
    "BENCH non200=%d statuses=%s requests=%d set_cookie=%d users=%d duration_us=%d p50_us=%d p99_us=%d\n",
    bad, table.concat(parts, ","), summary.requests, resigned, threads[1]:get("users"), summary.duration,
    latency:percentile(50), latency:percentile(99)))
end
