-- Loaded before every spec: loads the native module, so that its embedded
-- Lua modules (turbo_ws.*) are in package.preload.
require "turbo_ws"
