-- wrk script for the Popmap benchmark (driven by bench/run.py).
--
-- Environment:
--   WRK_BODIES         comma-separated paths of JSON request bodies; with several, each
--                      connection's requests cycle through them (M1: join, leave, ...)
--   WRK_AUTHORIZATION  optional Authorization header value ("Bearer <token>")
--
-- A response counts as an error when its status is not 200 or its body contains
-- "errors"; done() prints the counts as `bench_errors N` and `bench_non200 N`.

local function read_file(path)
  local file = assert(io.open(path, "rb"))
  local content = file:read("*a")
  file:close()
  return content
end

local bodies = {}
for path in string.gmatch(os.getenv("WRK_BODIES") or "", "[^,]+") do
  table.insert(bodies, read_file(path))
end
assert(#bodies > 0, "WRK_BODIES names no body")

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json"
local authorization = os.getenv("WRK_AUTHORIZATION")
if authorization and authorization ~= "" then
  wrk.headers["Authorization"] = authorization
end
wrk.body = bodies[1]

if #bodies > 1 then
  local requests = {}
  local turn = 0
  function request()
    if #requests == 0 then
      for i, content in ipairs(bodies) do
        requests[i] = wrk.format("POST", nil, nil, content)
      end
    end
    turn = turn % #requests + 1
    return requests[turn]
  end
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  errors = 0
  non200 = 0
end

function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
    errors = errors + 1
  elseif string.find(body, '"errors"', 1, true) then
    errors = errors + 1
  end
end

function done(summary, latency, requests)
  local total_errors, total_non200 = 0, 0
  for _, thread in ipairs(threads) do
    total_errors = total_errors + thread:get("errors")
    total_non200 = total_non200 + thread:get("non200")
  end
  io.write(string.format("bench_errors %d\n", total_errors))
  io.write(string.format("bench_non200 %d\n", total_non200))
end
