#!lua flags=allow-oom
--[[
  extendLocks.lua: renew the locks of jobs a worker is still running.

  KEYS: the 13 queue keys (include/queue.lua); only `stalled` is touched.
  ARGV[1] key prefix   ARGV[2] now (ms)   ARGV[3] lock duration (ms)
  then pairs: job id, lock token

  A lock is renewed only while it still holds the worker's token; renewing also takes the job
  out of the `stalled` set, so the next stalled check leaves it alone.

  Returns: the ids whose lock was lost (expired or taken over), so the worker knows.
]]
-- @include queue

local duration = ARGV[3]
local lost = {}
for a = 4, #ARGV, 2 do
  local jobId, token = ARGV[a], ARGV[a + 1]
  local lockKey = PREFIX .. jobId .. ":lock"
  if rcall("GET", lockKey) == token then
    rcall("SET", lockKey, token, "PX", duration)
    rcall("SREM", K.stalled, jobId)
  else
    lost[#lost + 1] = jobId
  end
end
return lost
