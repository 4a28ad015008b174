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

  Generated ids come from the lane's own counter (BullMQ's `id` key) and from the counter
  shared by every lane of the logical queue (KEYS[17]), both left at the id used: ids are
  unique across lanes, and an official client adding to a lane continues above them.
  Sent twice with the same call key (KEYS[15]), it adds nothing twice: it returns the ids of
  the first run.

  Returns: the list of job ids, in input order.
]]
-- @include queue

local function nextId()
  local counter = rcall("INCR", K.id)
  if K.sharedId and K.sharedId ~= K.id then
    local shared = rcall("INCR", K.sharedId)
    if shared > counter then
      counter = shared
      rcall("SET", K.id, counter)
    elseif counter > shared then
      rcall("SET", K.sharedId, counter)
    end
  end
  return counter
end

local saved = savedCall()
if saved then
  forgetPreviousCall()
  return saved
end
local n = tonumber(ARGV[3])
local cap = eventsCap()
local paused = isPaused()
local ids = {}
local a = 4
for i = 1, n do
  local customId, name, data, opts = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local delay, priority = tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5])
  a = a + 6
  local counter = nextId()
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
saveCall(ids)
-- Last, not first: on a full Redis (noeviction) a script is refused only at its first write,
-- and that first write must be one that adds (refused), not this DEL (which would let the rest
-- of the script past the limit).
forgetPreviousCall()
return ids
