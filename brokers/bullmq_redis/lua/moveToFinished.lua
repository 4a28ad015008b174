#!lua flags=allow-oom
--[[
  moveToFinished.lua: settle a batch of jobs a worker ran, then hand it its next jobs.
  One round trip per batch: BullMQ's "finish and fetch next", for many jobs at once.

  KEYS: the 13 queue keys (include/queue.lua).
  ARGV[1] key prefix   ARGV[2] now (ms)   ARGV[3] n, jobs to settle
  ARGV[4] fetch count (0 = fetch nothing)   ARGV[5] lock token for fetched jobs
  ARGV[6] lock duration (ms)                ARGV[7] worker name
  then, for each job to settle, 7 values:
    id, the token its lock was taken with, outcome, value, keep, delay (ms), stacktrace
  outcome: "completed" (value = return value as JSON)
           "failed"    failed for good (value = reason)
           "retry"     failed, back to wait/prioritized now (value = reason)
           "delayed"   failed, back after `delay` ms through the delayed set (value = reason)
  keep (completed/failed only): -1 keep every finished job, 0 delete this job now,
           n > 0 keep only the newest n in the completed/failed set (removeOnComplete/Fail).
  stacktrace: text appended to the job's stacktrace list (last 10 kept), or "".

  Every settled attempt adds 1 to "atm" (attempts made). A job is settled only if it is still
  active and its lock is either ours or gone (expired, not taken over): BullMQ refuses a missing
  lock and lets the stalled check re-run the job; we finish it, since no one else holds it.

  Sent twice with the same call key (KEYS[15]), it settles nothing twice: it returns the codes
  of the first run and hands out the jobs that run took.

  Returns: { {code per settled job}, next delayed due ms (0 if jobs were fetched),
             id1, {fields}, ... fetched jobs as in moveToActive.lua }
  codes: 0 settled, -1 job gone, -3 job not active (the stalled check moved it),
         -6 lock held by another worker (it took the job over)
]]
-- @include queue

local function appendStacktrace(jobKey, text)
  if text == "" then
    return
  end
  local current = rcall("HGET", jobKey, "stacktrace")
  local list = {}
  if current then
    local ok, decoded = pcall(cjson.decode, current)
    if ok and type(decoded) == "table" then
      list = decoded
    end
  end
  list[#list + 1] = text
  while #list > 10 do
    table.remove(list, 1)
  end
  rcall("HSET", jobKey, "stacktrace", cjson.encode(list))
end

local function settle(jobId, token, outcome, value, keep, delay, stack, paused, cap)
  local jobKey = PREFIX .. jobId
  if rcall("EXISTS", jobKey) == 0 then
    return -1
  end
  local lockKey = jobKey .. ":lock"
  local holder = rcall("GET", lockKey)
  if holder and holder ~= token then
    return -6
  end
  if rcall("LREM", K.active, -1, jobId) == 0 then
    return -3
  end
  rcall("DEL", lockKey)
  rcall("SREM", K.stalled, jobId)
  rcall("HINCRBY", jobKey, "atm", 1)
  if outcome == "completed" or outcome == "failed" then
    local setKey, field = K.completed, "returnvalue"
    if outcome == "failed" then
      setKey, field = K.failed, "failedReason"
      appendStacktrace(jobKey, stack)
    end
    if keep == 0 then
      removeJobKeys(jobKey)
    else
      rcall("ZADD", setKey, NOW, jobId)
      rcall("HSET", jobKey, field, value, "finishedOn", NOW)
      if keep > 0 then
        trimFinished(setKey, keep)
      end
    end
    emit(cap, "event", outcome, "jobId", jobId, field, value, "prev", "active")
  else
    rcall("HSET", jobKey, "failedReason", value)
    appendStacktrace(jobKey, stack)
    if outcome == "delayed" and delay > 0 then
      rcall("HSET", jobKey, "delay", delay)
      pushDelayed(jobId, NOW + delay, cap)
    else
      pushReady(jobId, tonumber(rcall("HGET", jobKey, "priority")) or 0, paused)
      emit(cap, "event", "waiting", "jobId", jobId, "prev", "active")
    end
  end
  return 0
end

forgetPreviousCall()
local saved = savedCall()
if saved then
  local again = {saved[1], saved[2]}
  appendHeld(again, saved[3], ARGV[5])
  return again
end
local n = tonumber(ARGV[3])
local cap = eventsCap()
local paused = isPaused()
local codes = {}
local a = 8
for i = 1, n do
  codes[i] = settle(ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], tonumber(ARGV[a + 4]),
                    tonumber(ARGV[a + 5]), ARGV[a + 6], paused, cap)
  a = a + 7
end
local out = {codes, 0}
local fetch = tonumber(ARGV[4])
local taken = 0
if fetch > 0 then
  taken = takeJobs(out, fetch, ARGV[5], ARGV[6], ARGV[7], cap)
end
if taken == 0 then
  out[2] = nextDelayedMs()
  if rcall("LLEN", K.wait) == 0 and rcall("LLEN", K.active) == 0
      and rcall("ZCARD", K.prioritized) == 0 then
    emit(cap, "event", "drained")
  end
end
saveCall({codes, out[2], handedOut(out, 3)})
return out
