-- exposure-monitor schema, version 5: one random-order index fewer on `hits`.
--
-- `hits_force (force, account_handle, post_created_at)` ordered the whole unsent backlog for
-- the first digest; the digest now reads the backlog through the partial `hits_unsent_*`
-- indexes of version 4, and nothing else walks it in that order (`hits list --force` filters
-- on the force and orders by post time, which `hits_post_created` gives). Its keys arrive in an
-- order unrelated to insertion, so each new hit dirtied a leaf page of its own in it: dropping
-- it makes storing a hit about a quarter cheaper (see README, "Store writes").

DROP INDEX hits_force;
