-- wrk script for the ceiling: a bare route; counts non-200 answers.
local threads = {}
errors = 0
function setup(thread) table.insert(threads, thread) end
function response(status, headers, body) if status ~= 200 then errors = errors + 1 end end
function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + t:get("errors") end
  io.write(string.format("BAD %d\n", total))
end
