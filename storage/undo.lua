-- KEYS[1] job hash. Deletes the record only while it is as Create left it (pending or
-- scheduled, never started): an enqueue that failed must not remove what a worker
-- wrote since. Returns 1 when deleted.
local state = redis.call("HGET", KEYS[1], "state")
if (state == "pending" or state == "scheduled") and redis.call("HGET", KEYS[1], "attempts") == "0" then
  redis.call("DEL", KEYS[1])
  return 1
end
return 0
