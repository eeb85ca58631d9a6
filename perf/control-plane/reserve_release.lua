-- wrk script: each thread owns node "bench-<thread id>" and alternates
-- POST connect_node / detach_node on project "bench" (HIL reserve/release).
-- Run with as many connections as threads (-tN -cN) so that every thread's
-- requests are sequential and all succeed (non-2xx are counted by wrk).
local counter = 0
local threads = {}

function setup(thread)
  thread:set("id", counter)
  table.insert(threads, thread)
  counter = counter + 1
end

function init(args)
  node = "bench-" .. id
  n = 0
end

function request()
  n = n + 1
  local path
  if n % 2 == 1 then
    path = "/v0/project/bench/connect_node"
  else
    path = "/v0/project/bench/detach_node"
  end
  return wrk.format("POST", path, nil, '{"node":"' .. node .. '"}')
end
