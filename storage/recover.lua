-- Requeue one task of a dead worker, as asynq v0.26's rdb.Requeue does, and make its
-- job record agree, in one step.
-- Every key is in the queue's Redis Cluster slot (hash tag {q}).
-- KEYS: asynq:{q}:active, :lease, :pending, :t:<id>, :scheduled, :archived, job hash,
--       then any number of workers' in-flight indexes of q: a task in one of them
--       belongs to that worker and is left alone ("indexed").
-- ARGV: id, reason, now (RFC 3339), ttl seconds, now (unix seconds),
--       requeue-at-once limit, archive limit, and the owner of the task's attempt (the
--       job record's "worker") as the caller read it, having found that owner dead (its
--       pulse lapsed) or the dead worker itself.
-- A record whose owner is not that one any more ("taken") was started by another
-- worker since: a recovery replayed late, or of a worker declared dead after its task
-- moved on, must not requeue a task someone else runs. A task whose record is final
-- (completed or failed) is not run again: its stale active entry is removed ("done")
-- or archived.
-- A task interrupted more than the first limit is scheduled with a growing delay (1 s,
-- 2 s, ... 5 min) instead of going first in line, so a task that kills its worker does
-- not crash-loop it; past the second limit it is archived (failed). The job record is
-- never written over when it already says completed or failed.
-- Returns "pending", "scheduled" or "archived" for what was done, else the task's asynq
-- state ("" when gone).
-- Or, with ARGV[9], a stranded task of the caller's own index (InFlight.RequeueStranded):
-- KEYS[8] is that index, and ARGV[9] the attempt the caller read. A task whose attempt
-- changed since (the caller fetched it again, as when this script's reply was lost and
-- go-redis sent it again), or that left the index (its handler ended), is "taken";
-- otherwise it leaves the index in this same step (and one whose record is gone, "",
-- or names another owner, is "taken" below).
local first = 8
if ARGV[9] then
  if (redis.call("HGET", KEYS[7], "attempts") or "") ~= ARGV[9] or redis.call("HDEL", KEYS[8], ARGV[1]) == 0 then
    return "taken"
  end
  first = 9
end
for i = first, #KEYS do
  if redis.call("HEXISTS", KEYS[i], ARGV[1]) == 1 then return "indexed" end
end
local job = KEYS[7]
local hasJob = redis.call("EXISTS", job) == 1
local jstate = redis.call("HGET", job, "state")
local final = jstate == "completed" or jstate == "failed"
if (redis.call("HGET", job, "worker") or "") ~= ARGV[8] then
  return "taken"
end
if final and redis.call("LREM", KEYS[1], 0, ARGV[1]) > 0 then
  redis.call("ZREM", KEYS[2], ARGV[1])
  if jstate == "completed" then
    redis.call("DEL", KEYS[4])
    return "done"
  end
  redis.call("ZADD", KEYS[6], tonumber(ARGV[5]), ARGV[1])
  redis.call("HSET", KEYS[4], "state", "archived")
  return "archived"
end
local function record(...)
  if hasJob and not final then
    redis.call("HSET", job, ...)
    if redis.call("HSTRLEN", job, "events") < 8192 then
      redis.call("HSET", job, "events", (redis.call("HGET", job, "events") or "") ..
        "interrupted " .. ARGV[3] .. " " .. ARGV[2] .. "\n")
    end
    redis.call("EXPIRE", job, ARGV[4])
  end
end
if redis.call("LREM", KEYS[1], 0, ARGV[1]) == 0 then
  local state = redis.call("HGET", KEYS[4], "state")
  if not state then return "" end
  if state == "retry" then
    record("state", "retry", "error", "interrupted: " .. ARGV[2])
  elseif state == "archived" then
    record("state", "failed", "error", "interrupted: " .. ARGV[2], "completed_at", ARGV[3])
  end
  return state
end
redis.call("ZREM", KEYS[2], ARGV[1])
local n = 1
if hasJob then n = redis.call("HINCRBY", job, "interrupted", 1) end
local now = tonumber(ARGV[5])
if n > tonumber(ARGV[7]) then
  redis.call("ZADD", KEYS[6], now, ARGV[1])
  redis.call("HSET", KEYS[4], "state", "archived")
  record("state", "failed", "completed_at", ARGV[3],
    "error", "interrupted " .. n .. " times (last: " .. ARGV[2] .. "); presumed to kill its worker, archived")
  return "archived"
end
if n > tonumber(ARGV[6]) then
  local delay = math.min(300, 2 ^ (n - tonumber(ARGV[6]) - 1))
  redis.call("ZADD", KEYS[5], now + delay, ARGV[1])
  redis.call("HSET", KEYS[4], "state", "scheduled")
  record("state", "scheduled",
    "error", "interrupted " .. n .. " times (last: " .. ARGV[2] .. "); runs again in " .. delay .. " s")
  return "scheduled"
end
redis.call("RPUSH", KEYS[3], ARGV[1])
redis.call("HSET", KEYS[4], "state", "pending")
record("state", "pending", "error", "interrupted: " .. ARGV[2] .. "; returned to its queue")
return "pending"
