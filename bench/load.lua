-- The one wrk script of the bench; MODE picks the load (all ids are random, keep-alive):
--   get    GET PREFIX..<id>             ids from IDS_FILE, one a line
--   list   GET one of PATHS             paths separated by "|", picked at random
--   graphql POST /graphql                item(id) of a random id, every field of REST's answer
--   post   POST PREFIX                  a new item
--   patch  PATCH PREFIX..<id>           {"price": "<random>"}
--   mix    95% get, 5% writes           the writes half post, half patch
--   seed   post until SEED_COUNT items exist, their ids written to IDS_OUT
--   sweep  GET every id of IDS_FILE once, in order (then on, round again); once every
--          one was answered (SWEEP_ROUNDS times, default once: as many answers), the
--          file SWEEP_DONE is written (the driver stops wrk)
-- PREFER (optional): the Prefer header of every write (respond-async: answer at commit).
-- KEYED (optional, "1"): every POST carries an Idempotency-Key of its own.
-- done() prints one line: RESULT rps=… p50_ms=… p99_ms=… errors=… requests=…
local mode = os.getenv("MODE") or "get"
local prefix = os.getenv("PREFIX") or "/api/v1/items/"
local ids, paths = {}, {}
local ids_file = os.getenv("IDS_FILE")
if ids_file then
  for line in io.lines(ids_file) do
    if #line > 0 then ids[#ids + 1] = line end
  end
end
for p in string.gmatch(os.getenv("PATHS") or "", "[^|]+") do paths[#paths + 1] = p end
local json = { ["Content-Type"] = "application/json" }
local prefer = os.getenv("PREFER")
if prefer and #prefer > 0 then json["Prefer"] = prefer end
local keyed = os.getenv("KEYED") == "1"
local n = 0
math.randomseed(os.time())
local run_id = tostring(os.time()) .. "-" .. tostring(math.random(1000000000))

local function get()
  return wrk.format("GET", prefix .. ids[math.random(#ids)])
end

local function post()
  n = n + 1
  local body = string.format('{"name":"wrk item %d","price":"%d.%02d","tags":["t%d","wrk"]}',
    n, math.random(0, 999), math.random(0, 99), n % 10)
  if keyed then json["Idempotency-Key"] = run_id .. "-" .. n end
  return wrk.format("POST", prefix, json, body)
end

local function patch()
  local body = string.format('{"price":"%d.%02d"}', math.random(0, 99999), math.random(0, 99))
  return wrk.format("PATCH", prefix .. ids[math.random(#ids)], json, body)
end

local function graphql()
  local body = string.format('{"query":"query($id: ID!){item(id: $id){id name description '
    .. 'price tags version createdAt updatedAt}}","variables":{"id":"%s"}}', ids[math.random(#ids)])
  return wrk.format("POST", "/graphql", json, body)
end

local function list()
  return wrk.format("GET", paths[math.random(#paths)])
end

local function mix()
  local r = math.random(100)
  if r <= 95 then return get() end
  if r <= 97 then return post() end
  return patch()
end

local swept = 0
local function sweep()
  swept = swept % #ids + 1
  return wrk.format("GET", prefix .. ids[swept])
end

local modes = { sweep = sweep, get = get, post = post, patch = patch, list = list, mix = mix,
  seed = post, graphql = graphql }
request = modes[mode]

if mode == "sweep" then
  local answered, rounds = 0, tonumber(os.getenv("SWEEP_ROUNDS") or "1")
  response = function()
    answered = answered + 1
    if answered == rounds * #ids then
      local f = assert(io.open(os.getenv("SWEEP_DONE"), "w"))
      f:write("done\n")
      f:close()
    end
  end
end

if mode == "seed" then
  -- POSTs until SEED_COUNT items were created, writing their ids to IDS_OUT (the driver
  -- stops wrk once the file is complete).
  local out = assert(io.open(os.getenv("IDS_OUT"), "w"))
  local want, made = tonumber(os.getenv("SEED_COUNT")), 0
  response = function(status, headers, body)
    if status ~= 201 or made >= want then return end
    local location = headers["location"] or headers["Location"]
    out:write(string.match(location, "[^/]+$"), "\n")
    made = made + 1
    if made % 500 == 0 or made >= want then out:flush() end
    if made >= want and wrk.thread then wrk.thread:stop() end
  end
end

done = function(summary, latency, requests)
  local e = summary.errors
  local errs = e.connect + e.read + e.write + e.status + e.timeout
  io.write(string.format(
    "RESULT rps=%.1f p50_ms=%.3f p99_ms=%.3f errors=%d requests=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, errs, summary.requests))
end
