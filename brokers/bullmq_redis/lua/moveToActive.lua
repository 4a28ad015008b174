#!lua flags=allow-oom
--[[
  moveToActive.lua: hand up to `count` ready jobs to a worker, with a lock on each.

  KEYS: the 13 queue keys (include/queue.lua).
  ARGV[1] key prefix   ARGV[2] now (ms)
  ARGV[3] count        ARGV[4] lock token   ARGV[5] lock duration (ms)   ARGV[6] worker name

  First moves delayed jobs that are due to wait/prioritized. Then takes jobs from the right
  of wait (oldest first), then the lowest scores of prioritized, pushes each onto active,
  sets <id>:lock = token with a TTL, records processedOn and the worker name, counts the
  start in "ats" and emits "active". The worker must renew each lock (extendLocks.lua)
  while the job runs, or the stalled check will hand the job to another worker.
  Sent twice with the same call key (KEYS[15]), it hands out the same jobs again, not others.

  Returns: { next delayed due time in ms when no job was taken (else 0),
             id1, {field, value, ...}, id2, {...}, ... }
]]
-- @include queue

forgetPreviousCall()
local saved = savedCall()
if saved then
  local again = {saved[1]}
  appendHeld(again, saved[2], ARGV[4])
  return again
end
local out = {0}
local taken = takeJobs(out, tonumber(ARGV[3]), ARGV[4], ARGV[5], ARGV[6], eventsCap())
if taken == 0 then
  out[1] = nextDelayedMs()
end
saveCall({out[1], handedOut(out, 2)})
return out
