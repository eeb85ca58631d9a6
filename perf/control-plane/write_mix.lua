-- wrk script: writers on objects of their own, one request at a time each
-- (run with -tN -cN).
--
--   wrk ... -s write_mix.lua URL -- nodes   every thread reserves and releases
--                                            node "bench-<id>" (HIL's
--                                            connect_node / detach_node on
--                                            project "bench")
--   wrk ... -s write_mix.lua URL            mixed: even threads reserve and
--                                            release node "bench-<100+id>",
--                                            odd threads create and delete
--                                            network "bench-net-<id>"
--
-- The next verb follows from the last answer, so a delete right after its
-- own successful create must find the network: any non-2xx (wrk's "Non-2xx
-- or 3xx responses") is a lost write or a read that did not see the
-- writer's own write.
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

function init(args)
  local nodes_only = (args[1] == "nodes")
  nets = (not nodes_only) and (id % 2 == 1)
  local node = nodes_only and id or (100 + id)
  node_body = '{"node":"bench-' .. node .. '"}'
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
