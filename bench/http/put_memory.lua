-- wrk script: PUT /memory/shared:bench/k<n> with a small JSON value; keys cycle
-- over 1000 per thread so the scope grows, then is overwritten.
local counter = 0
function setup(thread)
  thread:set("tid", tostring(math.random(1, 1000000000)))
end
function request()
  counter = (counter + 1) % 1000
  local body = string.format('{"thread":"%s","n":%d,"tags":["bench","memory"]}', tid, counter)
  return wrk.format("PUT", "/memory/shared:bench/k" .. tid .. "-" .. counter,
    {["Content-Type"] = "application/json"}, body)
end
