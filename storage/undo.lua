-- KEYS[1] job hash, KEYS[2] recent-jobs index, KEYS[3] dashboard job index; ARGV[1] id.
-- Deletes a record only while it is as Create left it (pending or scheduled, never
-- started): an enqueue that failed must not remove what a worker wrote since.
local state = redis.call("HGET", KEYS[1], "state")
if (state == "pending" or state == "scheduled") and redis.call("HGET", KEYS[1], "attempts") == "0" then
  redis.call("DEL", KEYS[1])
  redis.call("ZREM", KEYS[2], ARGV[1])
  redis.call("ZREM", KEYS[3], ARGV[1])
  return 1
end
return 0
