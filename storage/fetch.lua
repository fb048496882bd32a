-- fetch.lua: asynq v0.26's dequeueCmd (internal/rdb/rdb.go), then start for the task
-- it took, in one script (InFlight.StartAtFetch): the call that takes a task also
-- marks its job active, counts the attempt and indexes it as the fetching worker's.
-- KEYS[1..4] asynq's: the queue's pending list, paused key, active list, lease zset;
-- KEYS[5] the worker's in-flight index of the queue.
-- ARGV[1..2] asynq's: lease expiry (unix s), task key prefix; ARGV[3] job key prefix
-- (a job's key is it .. id); ARGV[4] now (RFC 3339); ARGV[5] record TTL (s);
-- ARGV[6] worker id; ARGV[7] queue.
-- Returns nil when no task was taken (as asynq's script does), else {task message,
-- task id, start's reply}: the attempt, -1 (completed), or 0 (no record with its
-- identity, or start failed: the worker starts the job itself, with the task's type).
if redis.call("EXISTS", KEYS[2]) == 0 then
  local id = redis.call("RPOPLPUSH", KEYS[1], KEYS[3])
  if id then
    local key = ARGV[2] .. id
    redis.call("HSET", key, "state", "active")
    redis.call("HDEL", key, "pending_since")
    redis.call("ZADD", KEYS[4], ARGV[1], id)
    local msg = redis.call("HGET", key, "msg")
    -- The task is taken: a start that fails (a job key of another type) must not lose
    -- it, so the worker starts the job itself then.
    local ok, n = pcall(start, ARGV[3] .. id, KEYS[5], nil, ARGV[7], ARGV[4], ARGV[5], ARGV[6], id)
    if not ok then n = 0 end
    return {msg, id, n}
  end
end
return nil
