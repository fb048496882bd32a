-- Requeue one task of a dead worker, as asynq v0.26's rdb.Requeue does.
-- KEYS: asynq:{q}:active, asynq:{q}:lease, asynq:{q}:pending, asynq:{q}:t:<id>; ARGV[1]: id.
-- Returns "pending" when requeued, else the task's current asynq state ("" when gone).
if redis.call("LREM", KEYS[1], 0, ARGV[1]) == 0 then
  local state = redis.call("HGET", KEYS[4], "state")
  if not state then return "" end
  return state
end
redis.call("ZREM", KEYS[2], ARGV[1])
redis.call("RPUSH", KEYS[3], ARGV[1])
redis.call("HSET", KEYS[4], "state", "pending")
return "pending"
