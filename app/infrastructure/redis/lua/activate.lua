-- Makes a generation live: one being restored (KEYS[2] = `building`) or one a rebuild
-- filled (KEYS[2] = `rebuild`). Readers follow `gen`, so they switch in this one step,
-- and the reset notice in it tells in-process caches that the partition was replaced.
-- KEYS[1] gen, KEYS[2] the pointer naming the generation. ARGV: generation, partition
-- tag .. ':', channel, partition, '1' to refuse while the generation's checkpoint is
-- behind the live one's (a rebuild; a restore has no live generation to be behind).
-- Returns {-1} when KEYS[2] no longer names the generation, {0, its checkpoint, the live
-- checkpoint} when it is behind, else {1, the generation it replaced or ''}.
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return {-1} end
local live = redis.call('GET', KEYS[1])
local cp = redis.call('GET', ARGV[2] .. ARGV[1] .. ':cp') or '0'
if live and ARGV[5] == '1' then
  local live_cp = redis.call('GET', ARGV[2] .. live .. ':cp') or '0'
  if tonumber(cp) < tonumber(live_cp) then return {0, cp, live_cp} end
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
redis.call('PUBLISH', ARGV[3], ARGV[4] .. ':' .. cp .. ':' .. ARGV[1] .. ':*')
return {1, live or ''}
