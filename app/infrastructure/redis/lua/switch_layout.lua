-- `items rebuild --partitions N`: readers follow another layout from this step on. Only
-- if the record still names the layout the rebuild started from (a second switch, or a
-- Redis that lost its data meanwhile, refuses), and with the notice that makes every
-- API process follow at once.
-- KEYS[1] the layout record. ARGV: the record expected, the new record, channel, notice.
-- Returns 1 when switched, 0 when the record had changed.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
