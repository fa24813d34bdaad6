-- wrk script: initCall with a new phone number on every request, so the per-number limits
-- never refuse; counts answers that are not {"status":true}.
-- args: service_id key operator_code (three digits; a fresh one per run)
local threads = {}
counter = 0
errors = 0

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  sid, key, op = args[1], args[2], args[3]
end

function request()
  counter = counter + 1
  local phone = string.format("7%s%d%06d", op, tid % 10, counter)
  return wrk.format("GET", "/v1.0/initCall?service_id=" .. sid .. "&key=" .. key .. "&phone=" .. phone)
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
