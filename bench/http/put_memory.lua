-- wrk script: PUT /memory/shared:bench/k<n> with a small JSON value. Keys cycle
-- over $BENCH_MEMORY_KEYS (default 1000) per thread, so the scope grows, then
-- is overwritten and compacted now and then; BENCH_MEMORY_KEYS=0 never repeats
-- a key (no dead lines, so no compaction) to tell the two costs apart.
local counter = 0
local keys = tonumber(os.getenv("BENCH_MEMORY_KEYS") or "1000")
function setup(thread)
  thread:set("tid", tostring(math.random(1, 1000000000)))
end
function request()
  counter = counter + 1
  if keys > 0 then counter = counter % keys end
  local body = string.format('{"thread":"%s","n":%d,"tags":["bench","memory"]}', tid, counter)
  return wrk.format("PUT", "/memory/shared:bench/k" .. tid .. "-" .. counter,
    {["Content-Type"] = "application/json"}, body)
end
