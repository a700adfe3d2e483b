-- wrk script: GET pages in one of three ways, counting every response that is not a 200 (wrk
-- itself only counts statuses >= 400: a 302 to the sign-in page would pass as a fast success)
-- and every response that signs the session cookie again (wrk does not keep cookies, so a
-- browser would pay for that once, wrk on every request).
--
--   ids:     GET <prefix><id>, ids drawn uniformly from [first, last]
--            wrk ... -s bench/wrk_requests.lua http://127.0.0.1:PORT -- ids /staff/accounts/ 1 100000 [seed]
--   cookies: GET <path> as one of many signed-in users, a session cookie drawn per request
--            from a file of accord_session values, one a line (bench/run.py mints them)
--            wrk ... -s bench/wrk_requests.lua http://127.0.0.1:PORT -- cookies /home <file> [seed]
--   paths:   GET one of many paths (with query strings), drawn per request from a file, one a
--            line (a path listed twice is drawn twice as often), with wrk's own headers (-H,
--            e.g. the staff session cookie); bench/run.py writes the review queue's mix
--            wrk ... -H 'Cookie: ...' -s bench/wrk_requests.lua http://127.0.0.1:PORT -- paths <file> [seed]
--
-- Each thread seeds its generator with seed + thread number, so two runs with the same
-- arguments make the same requests in the same order. done() prints one line the runner parses:
--   BENCH non200=<n> statuses=<code:count,...> requests=<n> set_cookie=<n> users=<n> ...

local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("number", counter)
  table.insert(threads, thread)
end

local function load_cookies(path, file_name)
  local file = assert(io.open(file_name, "r"), "cannot open the cookie file " .. tostring(file_name))
  local formatted = {}
  for line in file:lines() do
    if line ~= "" then
      table.insert(formatted, wrk.format("GET", path, {["Cookie"] = "accord_session=" .. line}))
    end
  end
  file:close()
  assert(#formatted > 0, "no cookie in " .. file_name)
  return formatted
end

local function load_paths(file_name)
  local file = assert(io.open(file_name, "r"), "cannot open the path file " .. tostring(file_name))
  local formatted = {}
  for line in file:lines() do
    if line ~= "" then
      table.insert(formatted, wrk.format("GET", line))  -- wrk.headers: the -H headers
    end
  end
  file:close()
  assert(#formatted > 0, "no path in " .. file_name)
  return formatted
end

function init(args)
  mode = args[1]
  local seed
  if mode == "ids" then
    prefix = args[2] or "/"
    first = tonumber(args[3] or "1")
    last = tonumber(args[4] or "1")
    seed = tonumber(args[5] or "2026")
    users = 0
  elseif mode == "cookies" then
    requests = load_cookies(args[2] or "/", args[3])
    seed = tonumber(args[4] or "2026")
    users = #requests
  elseif mode == "paths" then
    requests = load_paths(args[2])
    seed = tonumber(args[3] or "2026")
    users = 0
  else
    error("the first argument is ids, cookies or paths, not " .. tostring(mode))
  end
  math.randomseed(seed + number)
  non200 = 0
  set_cookie = 0
  statuses = {}
end

function request()
  if mode == "ids" then
    return wrk.format("GET", prefix .. math.random(first, last))
  end
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
