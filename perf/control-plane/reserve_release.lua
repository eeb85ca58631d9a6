-- wrk script: each thread owns node "bench-<thread id>" and alternates
-- POST connect_node / detach_node on project "bench" (HIL reserve/release).
-- Run with as many connections as threads (-tN -cN): every thread's requests
-- are then sequential, and the next verb is chosen from the last response,
-- so all requests succeed (wrk reports any non-2xx).
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

function init(args)
  node = "bench-" .. id
  connected = false
  body = '{"node":"' .. node .. '"}'
end

function request()
  if connected then
    return wrk.format("POST", "/v0/project/bench/detach_node", nil, body)
  end
  return wrk.format("POST", "/v0/project/bench/connect_node", nil, body)
end

function response(status, headers, resp_body)
  if status == 200 then
    connected = not connected
  end
end
