-- One batch of one partition, applied atomically: views, their list-index entries and
-- the checkpoint move together or not at all, and the change notice goes out with them.
-- KEYS[1] checkpoint key of the target generation, KEYS[2] the pointer that must name
-- that generation (`gen` for the live one, `building` while restoring, `rebuild`),
-- KEYS[3] the partition's owner fence.
-- ARGV: base, generation, expected checkpoint, new checkpoint, channel, notice, the
-- writer's owner epoch (0: not an owner, a rebuild's catch-up or a dead-letter retry,
-- which only the checkpoint guards), op count, then per op: id, from, to, view ('' =
-- deleted), n removes, (index, entry)..., n adds, ...
-- Checks everything before it writes anything: a script that fails half-way keeps its
-- earlier writes, so the only error path is before the first write.
-- Returns {-1, why} when fenced (an owner with a later epoch has written or claimed the
-- partition, the generation or the checkpoint moved), {-2, id, version} when a view is
-- not at the version the op starts from, else {1, ops applied}.
local base = ARGV[1]
local epoch = tonumber(ARGV[7])
local fence = tonumber(redis.call('GET', KEYS[3]) or '0')
if epoch > 0 and epoch < fence then return {-1, 'epoch', fence} end
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return {-1, 'generation'} end
local cp = tonumber(redis.call('GET', KEYS[1]) or '0')
if cp ~= tonumber(ARGV[3]) then return {-1, 'checkpoint', cp} end
local verkey = base .. 'ver'
local ops = {}
local touched, seen = {verkey}, {}
local function touch(key)
  if not seen[key] then seen[key] = true; touched[#touched + 1] = key end
end
local i = 9
for k = 1, tonumber(ARGV[8]) do
  local op = {id = ARGV[i], from = tonumber(ARGV[i + 1]), to = tonumber(ARGV[i + 2]),
              view = ARGV[i + 3], rem = i + 5, nrem = tonumber(ARGV[i + 4])}
  i = i + 5 + 2 * op.nrem
  op.nadd = tonumber(ARGV[i]); op.add = i + 1
  i = i + 1 + 2 * op.nadd
  touch(base .. 'v:' .. op.id)
  for j = 0, op.nrem - 1 do touch(base .. ARGV[op.rem + 2 * j]) end
  for j = 0, op.nadd - 1 do touch(base .. ARGV[op.add + 2 * j]) end
  ops[k] = op
end
-- Every key this reads or writes beyond KEYS (which Redis checks itself), before the
-- first of them is read: lib/settled.lua.
settled(KEYS[2], touched)
for _, op in ipairs(ops) do
  local have = math.abs(tonumber(redis.call('HGET', verkey, op.id) or '0'))
  if have >= op.to then
    op.skip = true
  elseif have ~= op.from then
    return {-2, op.id, have}
  end
end
local applied = 0
for _, op in ipairs(ops) do
  if not op.skip then
    applied = applied + 1
    if op.view == '' then
      redis.call('DEL', base .. 'v:' .. op.id)
      redis.call('HSET', verkey, op.id, -op.to)
    else
      redis.call('SET', base .. 'v:' .. op.id, op.view)
      redis.call('HSET', verkey, op.id, op.to)
    end
    for j = 0, op.nrem - 1 do
      redis.call('ZREM', base .. ARGV[op.rem + 2 * j], ARGV[op.rem + 2 * j + 1])
    end
    for j = 0, op.nadd - 1 do
      redis.call('ZADD', base .. ARGV[op.add + 2 * j], 0, ARGV[op.add + 2 * j + 1])
    end
  end
end
redis.call('SET', KEYS[1], ARGV[4])
if epoch > fence then redis.call('SET', KEYS[3], epoch) end
redis.call('PUBLISH', ARGV[5], ARGV[6])
return {1, applied}
