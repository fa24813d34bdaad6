-- wrk script: getInfo over a range of existing ucaller_ids; counts answers that are not ok.
-- args: service_id key first_id last_id
local threads = {}
errors = 0
i = 0

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  sid, key, first, last = args[1], args[2], tonumber(args[3]), tonumber(args[4])
  i = tid or 0
end

function request()
  i = i + 1
  local uid = first + (i % (last - first + 1))
  return wrk.format("GET", "/v1.0/getInfo?service_id=" .. sid .. "&key=" .. key .. "&uid=" .. uid)
end

function response(status, headers, body)
  if status ~= 200 or not string.find(body, '"status":true', 1, true) then
    errors = errors + 1
  end
end

function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + t:get("errors") end
  io.write(string.format("BAD %d\n", total))
end
