-- wrk script: background runs of flow $BENCH_FLOW (default "brief"), each
-- POST /runs followed by GET /runs/{id}/wait, a new story per run. A thread
-- keeps the ids its POSTs answered and sends a wait for one before its next
-- POST, so every run is started and waited for once: runs/s is req/s / 2.
local counter = 0
local flow = os.getenv("BENCH_FLOW") or "brief"
local started = {}
function setup(thread)
  thread:set("tid", tostring(math.random(1, 1000000000)))
end
function request()
  local run_id = table.remove(started)
  if run_id then
    return wrk.format("GET", "/runs/" .. run_id .. "/wait?timeout_s=30")
  end
  counter = counter + 1
  local body = string.format('{"flow":"%s","story_id":"w%s-%d","input":"a todo app"}', flow, tid, counter)
  return wrk.format("POST", "/runs", {["Content-Type"] = "application/json"}, body)
end
function response(status, headers, body)
  if status == 202 then
    local run_id = string.match(body, '"run_id":"(run%-%x+)"')
    if run_id then table.insert(started, run_id) end
  end
end
