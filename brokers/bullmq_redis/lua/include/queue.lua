--[[
  include/queue.lua: shared by every script of a BullMQ-style queue (pasted in by scripts.py
  where a script says "-- @include queue").

  Every script receives the same KEYS, in this order:
    KEYS[1] wait         KEYS[2] active        KEYS[3] prioritized   KEYS[4] pc
    KEYS[5] delayed      KEYS[6] completed     KEYS[7] failed        KEYS[8] stalled
    KEYS[9] meta         KEYS[10] events       KEYS[11] marker       KEYS[12] id
    KEYS[13] stalled-check                     KEYS[14] paused (BullMQ's legacy list)
  then, for scripts that may be sent twice (see "Calls sent twice" below):
    KEYS[15] this call's key   KEYS[16] the caller's previous call key, to forget
    KEYS[17] addJobs only: the id counter shared by every lane of the logical queue
  and starts its ARGV with:
    ARGV[1] key prefix of the queue ("bull:<queue>:"), job hashes are prefix .. id
    ARGV[2] now, in ms since the epoch (the client's clock, as BullMQ does)
]]
local rcall = redis.call
local K = {
  wait = KEYS[1], active = KEYS[2], prioritized = KEYS[3], pc = KEYS[4], delayed = KEYS[5],
  completed = KEYS[6], failed = KEYS[7], stalled = KEYS[8], meta = KEYS[9], events = KEYS[10],
  marker = KEYS[11], id = KEYS[12], stalledCheck = KEYS[13], paused = KEYS[14],
  call = KEYS[15], forget = KEYS[16], sharedId = KEYS[17]
}
local PREFIX = ARGV[1]
local NOW = tonumber(ARGV[2])

--[[ Calls sent twice. A reply lost on its way back (a timeout, a dropped connection) makes the
  client send the same call again, same KEYS and ARGV. A script that must not act twice stores
  what it did under its call key (for CALL_TTL_MS) and, run again with that key, answers from
  it instead of acting. A client names its previous call key once it got that call's reply, so
  that at most one such key per client lives on. ]]
local CALL_TTL_MS = 300000

local function forgetPreviousCall()
  if K.forget and K.forget ~= K.call then
    rcall("DEL", K.forget)
  end
end

local function savedCall()
  if K.call then
    local saved = rcall("GET", K.call)
    if saved then
      return cmsgpack.unpack(saved)
    end
  end
  return nil
end

local function saveCall(record)
  if K.call then
    rcall("SET", K.call, cmsgpack.pack(record), "PX", CALL_TTL_MS)
  end
end

-- The ids of the jobs a reply hands out: every other element of out from position first.
local function handedOut(out, first)
  local ids = {}
  for i = first, #out, 2 do
    ids[#ids + 1] = out[i]
  end
  return ids
end

-- Append, for a call answered again, the jobs it handed out that still hold its lock.
local function appendHeld(out, ids, token)
  for _, jobId in ipairs(ids) do
    local jobKey = PREFIX .. jobId
    if rcall("GET", jobKey .. ":lock") == token then
      out[#out + 1] = jobId
      out[#out + 1] = rcall("HGETALL", jobKey)
    end
  end
end

-- Length cap of the events stream: meta's opts.maxLenEvents, 10000 when unset (BullMQ's default).
local function eventsCap()
  local cap = rcall("HGET", K.meta, "opts.maxLenEvents")
  if not cap then
    cap = 10000
    rcall("HSET", K.meta, "opts.maxLenEvents", cap)
  end
  return cap
end

local function emit(cap, ...)
  rcall("XADD", K.events, "MAXLEN", "~", cap, "*", ...)
end

local function isPaused()
  return rcall("HEXISTS", K.meta, "paused") == 1
end

-- Wake one idle worker: marker member "0" with score 0 means "jobs are ready".
local function markReady(paused)
  if not paused then
    rcall("ZADD", K.marker, 0, "0")
  end
end

-- Marker member "1" carries the due time (ms) of the earliest delayed job.
local function markNextDelayed()
  local first = rcall("ZRANGE", K.delayed, 0, 0, "WITHSCORES")
  if first[2] then
    rcall("ZADD", K.marker, math.floor(tonumber(first[2]) / 0x1000), "1")
  end
end

-- Make a job ready to run: the wait list, or the prioritized set when it has a priority.
local function pushReady(jobId, priority, paused)
  if priority > 0 then
    local counter = rcall("INCR", K.pc)
    rcall("ZADD", K.prioritized, priority * 0x100000000 + counter % 0x100000000, jobId)
  else
    rcall("LPUSH", K.wait, jobId)
  end
  markReady(paused)
end

-- Score in the delayed set: due ms * 0x1000, plus one more than the last job due in that same ms,
-- so that jobs due in one millisecond keep their order.
local function delayedScore(dueMs)
  local low = dueMs * 0x1000
  local high = low + 0xfff
  local last = rcall("ZREVRANGEBYSCORE", K.delayed, high, low, "WITHSCORES", "LIMIT", 0, 1)
  if last[2] then
    return math.min(tonumber(last[2]) + 1, high)
  end
  return low
end

local function pushDelayed(jobId, dueMs, cap)
  rcall("ZADD", K.delayed, delayedScore(dueMs), jobId)
  emit(cap, "event", "delayed", "jobId", jobId, "delay", dueMs)
  markNextDelayed()
end

-- Move delayed jobs whose time has come (at most 1000 per call) to wait or prioritized.
local function promoteDue(paused, cap)
  local due = rcall("ZRANGEBYSCORE", K.delayed, 0, (NOW + 1) * 0x1000 - 1, "LIMIT", 0, 1000)
  if #due == 0 then
    return
  end
  rcall("ZREM", K.delayed, unpack(due))
  for _, jobId in ipairs(due) do
    local jobKey = PREFIX .. jobId
    if rcall("EXISTS", jobKey) == 1 then
      pushReady(jobId, tonumber(rcall("HGET", jobKey, "priority")) or 0, true)
      rcall("HSET", jobKey, "delay", 0)
      emit(cap, "event", "waiting", "jobId", jobId, "prev", "delayed")
    end
  end
  markReady(paused)
end

-- Jobs an older BullMQ parked in its `paused` list (it renamed wait to paused on pause) go
-- back to wait, as BullMQ's resume does: the whole list if wait is empty, else 1000 at a time
-- to the head of wait.
local function resumeLegacyPaused()
  if rcall("EXISTS", K.paused) == 0 then
    return
  end
  if rcall("EXISTS", K.wait) == 0 then
    rcall("RENAME", K.paused, K.wait)
  else
    local jobs = rcall("LRANGE", K.paused, 0, 999)
    rcall("RPUSH", K.wait, unpack(jobs))
    rcall("LTRIM", K.paused, #jobs, -1)
  end
  markReady(false)
end

-- Take up to `count` ready jobs (wait first, then by priority), lock each with `token` for
-- `lockDuration` ms, and append id and HGETALL fields of each to `out`. Returns how many.
local function takeJobs(out, count, token, lockDuration, workerName, cap)
  local paused = isPaused()
  promoteDue(paused, cap)
  if paused then
    return 0
  end
  resumeLegacyPaused()
  local taken = 0
  while taken < count do
    local jobId = rcall("RPOPLPUSH", K.wait, K.active)
    if not jobId then
      local top = rcall("ZPOPMIN", K.prioritized)
      if not top[1] then
        break
      end
      jobId = top[1]
      rcall("LPUSH", K.active, jobId)
    end
    local jobKey = PREFIX .. jobId
    if rcall("EXISTS", jobKey) == 0 then
      -- a dangling id (its job was removed): drop it
      rcall("LREM", K.active, 1, jobId)
    else
      rcall("SET", jobKey .. ":lock", token, "PX", lockDuration)
      rcall("HSET", jobKey, "processedOn", NOW, "pb", workerName)
      rcall("HINCRBY", jobKey, "ats", 1)
      emit(cap, "event", "active", "jobId", jobId, "prev", "waiting")
      out[#out + 1] = jobId
      out[#out + 1] = rcall("HGETALL", jobKey)
      taken = taken + 1
    end
  end
  if taken > 0 and (rcall("LLEN", K.wait) > 0 or rcall("ZCARD", K.prioritized) > 0) then
    markReady(false)  -- more work left: let another idle worker wake up
  end
  return taken
end

-- Due time (ms) of the earliest delayed job, or 0.
local function nextDelayedMs()
  local first = rcall("ZRANGE", K.delayed, 0, 0, "WITHSCORES")
  if first[2] then
    return math.floor(tonumber(first[2]) / 0x1000)
  end
  return 0
end

local function removeJobKeys(jobKey)
  rcall("DEL", jobKey, jobKey .. ":lock", jobKey .. ":logs")
end

-- Keep only the newest `keep` ids of a completed/failed set, deleting the others' hashes.
local function trimFinished(setKey, keep)
  local old = rcall("ZREVRANGE", setKey, keep, -1)
  for _, oldId in ipairs(old) do
    removeJobKeys(PREFIX .. oldId)
  end
  if #old > 0 then
    rcall("ZREMRANGEBYRANK", setKey, 0, -(keep + 1))
  end
end
