#!lua flags=allow-oom
--[[
  moveStalledJobsToWait.lua: find jobs whose worker died or froze, and hand them out again.

  KEYS: the 13 queue keys (include/queue.lua).
  ARGV[1] key prefix   ARGV[2] now (ms)
  ARGV[3] max stalled count   ARGV[4] stalled interval (ms)

  Runs at most once per stalled interval across all workers (the stalled-check key). A job is
  stalled when it was in `active` at the previous check, has not had its lock renewed since
  (still in the `stalled` set) and has no lock now. Such a job leaves active, its "stc"
  counter rises, and it goes back to the head of wait, prioritized or not, as in BullMQ (it
  has waited long enough); or, once "stc" is above the max stalled count, it fails with reason
  "job stalled more than allowable limit", kept in the failed set or removed as its
  removeOnFail option says. (BullMQ now marks such a job and lets the next worker that takes it
  fail it; failing it here gives the same end state one step sooner.) Finally every job now in
  active is put in `stalled`, to be checked next time.

  Returns: { {ids moved back to wait}, {ids failed} }, or {{}, {}} if a check ran recently.
]]
-- @include queue

local STALLED_REASON = "job stalled more than allowable limit"

-- The job's removeOnFail as a keep count: -1 keep every failed job, 0 remove this one, n keep n.
local function removeOnFail(jobKey)
  local ok, opts = pcall(cjson.decode, rcall("HGET", jobKey, "opts") or "{}")
  if not ok or type(opts) ~= "table" then
    return -1
  end
  local value = opts["removeOnFail"]
  if value == true then
    return 0
  elseif type(value) == "number" and value >= 0 then
    return math.floor(value)
  elseif type(value) == "table" and type(value["count"]) == "number" and value["count"] >= 0 then
    return math.floor(value["count"])
  end
  return -1
end
local maxStalled = tonumber(ARGV[3])
if rcall("SET", K.stalledCheck, NOW, "PX", ARGV[4], "NX") == false then
  return {{}, {}}
end
local cap = eventsCap()
local paused = isPaused()
local requeued, failed = {}, {}
local suspects = rcall("SMEMBERS", K.stalled)
if #suspects > 0 then
  rcall("DEL", K.stalled)
  for _, jobId in ipairs(suspects) do
    local jobKey = PREFIX .. jobId
    if rcall("EXISTS", jobKey .. ":lock") == 0 and rcall("LREM", K.active, 1, jobId) > 0 then
      local stalls = rcall("HINCRBY", jobKey, "stc", 1)
      emit(cap, "event", "stalled", "jobId", jobId)
      if stalls > maxStalled then
        rcall("HINCRBY", jobKey, "atm", 1)
        emit(cap, "event", "failed", "jobId", jobId, "failedReason", STALLED_REASON, "prev", "active")
        local keep = removeOnFail(jobKey)
        if keep == 0 then
          removeJobKeys(jobKey)
        else
          rcall("HSET", jobKey, "failedReason", STALLED_REASON, "finishedOn", NOW)
          rcall("ZADD", K.failed, NOW, jobId)
          if keep > 0 then
            trimFinished(K.failed, keep)
          end
        end
        failed[#failed + 1] = jobId
      else
        rcall("RPUSH", K.wait, jobId)  -- the head of wait: it has waited long enough
        markReady(paused)
        emit(cap, "event", "waiting", "jobId", jobId, "prev", "active")
        requeued[#requeued + 1] = jobId
      end
    end
  end
end
local active = rcall("LRANGE", K.active, 0, -1)
for i = 1, #active, 5000 do
  rcall("SADD", K.stalled, unpack(active, i, math.min(i + 4999, #active)))
end
return {requeued, failed}
