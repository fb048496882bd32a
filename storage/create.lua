-- KEYS[1] job hash. ARGV[1]: ttl seconds; ARGV[2..]: the record's field/value pairs
-- (Jobs.recordFields).
-- Returns 1 when the record was created, 0 when one with this id exists (unchanged).
if redis.call("EXISTS", KEYS[1]) == 1 then
  return 0
end
redis.call("HSET", KEYS[1], unpack(ARGV, 2))
redis.call("EXPIRE", KEYS[1], ARGV[1])
return 1
