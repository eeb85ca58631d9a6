-- wrk script: eight writers, each on objects of its own, one request at a
-- time (run with -tN -cN). Even threads reserve and release node
-- "bench-<100+id>" (POST connect_node / detach_node on project "bench";
-- not the node reserve_release.lua uses); odd
-- threads create and delete network "bench-net-<id>" (PUT / DELETE
-- /v0/network). The next verb follows from the last answer, so a delete
-- right after its own successful create must find the network: any non-2xx
-- (wrk's "Non-2xx or 3xx responses") is a lost write or a read that did not
-- see the writer's own write.
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

function init(args)
  nets = (id % 2 == 1)
  node_body = '{"node":"bench-' .. (100 + id) .. '"}'
  errors = 0
  net_path = "/v0/network/bench-net-" .. id
  net_body = '{"owner":"bench","access":"bench","net_id":""}'
  done = false
end

function request()
  if nets then
    if done then
      return wrk.format("DELETE", net_path)
    end
    return wrk.format("PUT", net_path, nil, net_body)
  end
  if done then
    return wrk.format("POST", "/v0/project/bench/detach_node", nil, node_body)
  end
  return wrk.format("POST", "/v0/project/bench/connect_node", nil, node_body)
end

function response(status, headers, body)
  if status == 200 then
    done = not done
  else
    -- The first few in full; wrk counts them all ("Non-2xx or 3xx responses").
    errors = errors + 1
    if errors <= 3 then
      io.stderr:write("thread " .. id .. ": HTTP " .. status .. " " .. body .. "\n")
    end
  end
end
