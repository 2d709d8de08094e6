-- `items verify --repair`: rewrite one item's view, `ver` entry and index entries from
-- PostgreSQL, only if the generation, the `ver` entry and the view are still what the
-- caller checked: a projector that moved the item since wins, and the re-verify tells.
-- A repair publishes its notice (a repair does not move the checkpoint) in the same step.
-- KEYS[1] the live generation pointer. ARGV: base, generation, id, the `ver` entry as
-- checked ('' none), '1'/'0' whether a view was there, the view as checked, the new `ver`
-- entry ('' leave it), the new view ('' delete), channel, the partition's notice label,
-- n removes,
-- (index, entry)..., n adds, ...
-- Returns -1 when the generation moved, 0 when the item moved, 1 when repaired.
if redis.call('GET', KEYS[1]) ~= ARGV[2] then return -1 end
local base = ARGV[1]
local vkey = base .. 'v:' .. ARGV[3]
-- The removes, then the adds: (index, entry) pairs after their count.
local rems, adds, i = {}, {}, 11
for _, found in ipairs({rems, adds}) do
  local n = tonumber(ARGV[i])
  for j = 1, n do found[j] = {base .. ARGV[i + 2 * j - 1], ARGV[i + 2 * j]} end
  i = i + 1 + 2 * n
end
-- Every key this reads or writes, before the first of them is read: lib/settled.lua.
local touched = {vkey, base .. 'ver', base .. 'cp'}
for _, found in ipairs({rems, adds}) do
  for _, pair in ipairs(found) do touched[#touched + 1] = pair[1] end
end
settled(KEYS[1], touched)
local ver = redis.call('HGET', base .. 'ver', ARGV[3])
if (ver or '') ~= ARGV[4] then return 0 end
local view = redis.call('GET', vkey)
if ARGV[5] == '1' then
  if view ~= ARGV[6] then return 0 end
elseif view then
  return 0
end
if ARGV[8] == '' then redis.call('DEL', vkey) else redis.call('SET', vkey, ARGV[8]) end
if ARGV[7] ~= '' then redis.call('HSET', base .. 'ver', ARGV[3], ARGV[7]) end
local cp = redis.call('GET', base .. 'cp') or '0'
redis.call('PUBLISH', ARGV[9], ARGV[10] .. ':' .. cp .. ':' .. ARGV[2] .. ':!' .. ARGV[3])
for _, pair in ipairs(rems) do redis.call('ZREM', pair[1], pair[2]) end
for _, pair in ipairs(adds) do redis.call('ZADD', pair[1], 0, pair[2]) end
return 1
