-- bench/clients/coro_client.lua in its luv mode, with one libuv fd alive
-- (a listening TCP socket), as a luvit program usually has: then every
-- turn of turbo_ws's loop runs uv_run("nowait"), and libuv polls its own
-- epoll fd (turbo_ws.luv, before_block). For strace -c against luv mode
-- without an fd:
--   strace -f -c luajit bench/profile/luv_fd_client.lua URL CONNS INFLIGHT SECONDS luv
local uv = require "luv"
local listener = uv.new_tcp()
assert(listener:bind("127.0.0.1", 0))
assert(listener:listen(16, function() end))
local here = arg[0]:match("^(.*)/") or "."
arg[0] = here .. "/../clients/coro_client.lua"
assert(loadfile(arg[0]))(unpack(arg))
