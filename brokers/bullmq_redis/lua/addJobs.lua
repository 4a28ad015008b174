--[[
  addJobs.lua: add one or more jobs to a BullMQ-style queue, atomically.

  KEYS: the 13 queue keys (include/queue.lua).
  ARGV[1] key prefix   ARGV[2] now (ms)   ARGV[3] n, the number of jobs
  then, for each job, 6 values:
    custom id ("" = take the next value of the id counter), name, data (JSON text),
    opts (JSON text, BullMQ's option names), delay (ms, 0 = none), priority (0 = none)

  For each job: store its hash (name, data, opts, timestamp, delay, priority), emit "added",
  then put it in the delayed set (delay > 0), the prioritized set (priority > 0) or the wait
  list, and set the marker so that an idle worker wakes up. A custom id that already exists
  is not added again (BullMQ's rule) and its existing id is returned.

  Returns: the list of job ids, in input order.
]]
-- @include queue

local n = tonumber(ARGV[3])
local cap = eventsCap()
local paused = isPaused()
local ids = {}
local a = 4
for i = 1, n do
  local customId, name, data, opts = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local delay, priority = tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5])
  a = a + 6
  local counter = rcall("INCR", K.id)
  local jobId = customId
  if jobId == "" then
    jobId = tostring(counter)
  end
  local jobKey = PREFIX .. jobId
  if customId ~= "" and rcall("EXISTS", jobKey) == 1 then
    emit(cap, "event", "duplicated", "jobId", jobId)
  else
    rcall("HSET", jobKey, "name", name, "data", data, "opts", opts, "timestamp", NOW,
          "delay", delay, "priority", priority)
    rcall("XADD", K.events, "*", "event", "added", "jobId", jobId, "name", name)
    if delay > 0 then
      pushDelayed(jobId, NOW + delay, cap)
    else
      pushReady(jobId, priority, paused)
      emit(cap, "event", "waiting", "jobId", jobId)
    end
  end
  ids[i] = jobId
end
return ids
