-- `items rebuild` into a new layout: readers follow it from this step on. Only if the
-- record still names the layout the rebuild started from (a second switch, or a Redis
-- that lost its data meanwhile, refuses), and with the notice that makes every API
-- process follow at once.
-- KEYS[1] the layout record. ARGV: the expected layout's name and partition count, the
-- new record, channel, notice.
-- Returns 1 when switched, 0 when the record had changed.
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local current = cjson.decode(raw)
if current['name'] ~= ARGV[1] or tonumber(current['partitions']) ~= tonumber(ARGV[2]) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
