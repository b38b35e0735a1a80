-- wrk script: POST /run of flow $BENCH_FLOW (default "brief"), a new story per
-- request so runs never collide (409) and never resume (skip).
local counter = 0
local flow = os.getenv("BENCH_FLOW") or "brief"
function setup(thread)
  thread:set("tid", tostring(math.random(1, 1000000000)))
end
function request()
  counter = counter + 1
  local body = string.format('{"flow":"%s","story_id":"b%s-%d","input":"a todo app"}', flow, tid, counter)
  return wrk.format("POST", "/run", {["Content-Type"] = "application/json"}, body)
end
