-- KEYS[1] job hash; KEYS[2] (optional) the worker's in-flight index of the queue, in
-- the same slot. ARGV: type, queue, now (RFC 3339), ttl seconds, worker id (the owner
-- of this attempt, which recovery checks; "" for none), task id (with KEYS[2]).
-- Returns the new attempt count (the task is then indexed), or -1 when the job already
-- completed (nothing changes).
local key = KEYS[1]
if redis.call("HGET", key, "state") == "completed" then
  return -1
end
redis.call("HSETNX", key, "type", ARGV[1])
redis.call("HSETNX", key, "queue", ARGV[2])
redis.call("HSETNX", key, "created_at", ARGV[3])
if KEYS[2] then
  redis.call("HSET", KEYS[2], ARGV[6], ARGV[2])
end
redis.call("HSET", key, "state", "active", "error", "")
if ARGV[5] and ARGV[5] ~= "" then
  redis.call("HSET", key, "worker", ARGV[5])
end
local n = redis.call("HINCRBY", key, "attempts", 1)
-- The timeline: one line per event, bounded so a crash-looping task cannot grow it.
if redis.call("HSTRLEN", key, "events") < 8192 then
  redis.call("HSET", key, "events", (redis.call("HGET", key, "events") or "") .. "started " .. ARGV[3] .. " attempt " .. n .. "\n")
end
redis.call("EXPIRE", key, ARGV[4])
return n
