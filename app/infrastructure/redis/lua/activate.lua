-- Makes a generation live: one being restored (KEYS[2] = `building`) or one a rebuild
-- filled (KEYS[2] = `rebuild`). Readers follow `gen`, so they switch in this one step,
-- and the reset notice in it tells in-process caches that the partition was replaced.
-- KEYS[1] gen, KEYS[2] the pointer naming the generation, KEYS[3] the owner fence.
-- ARGV: generation, partition tag .. ':', channel, the partition's notice label, '1' to
-- refuse while the generation's checkpoint is behind the live one's (a rebuild; a
-- restore has no live generation to be behind), the caller's owner epoch (0: a rebuild,
-- not an owner).
-- Returns {-1} when KEYS[2] no longer names the generation or a later owner holds the
-- fence, {0, its checkpoint, the live checkpoint} when it is behind, else {1, the
-- generation it replaced or ''}.
local epoch = tonumber(ARGV[6])
if epoch > 0 and epoch < tonumber(redis.call('GET', KEYS[3]) or '0') then return {-1} end
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return {-1} end
local live = redis.call('GET', KEYS[1])
local cp = settled_get(KEYS[1], ARGV[2] .. ARGV[1] .. ':cp') or '0'  -- lib/settled.lua
if live and ARGV[5] == '1' then
  local live_cp = settled_get(KEYS[1], ARGV[2] .. live .. ':cp') or '0'
  if tonumber(cp) < tonumber(live_cp) then return {0, cp, live_cp} end
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
redis.call('PUBLISH', ARGV[3], ARGV[4] .. ':' .. cp .. ':' .. ARGV[1] .. ':*')
return {1, live or ''}
