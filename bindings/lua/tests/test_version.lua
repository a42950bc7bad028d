-- The load-time version check: the module refuses a library of another major version or an
-- older minor version than the header it was built against.
local H = dofile((arg[0]:match("(.*/)") or "./") .. "harness.lua")
local core = require("autograd_core")
local ag = require("autograd")

H.eq(core.AG_VERSION_NUMBER, core.ag_version_number(), "built and loaded versions agree here")
H.eq(math.type(core.AG_VERSION_NUMBER), "integer")
H.eq(ag.version, core.ag_version_string())

local ok = ag._version_compatible
H.eq(ok(100, 100), true)
H.eq(ok(100, 101), true, "a newer patch")
H.eq(ok(100, 200), true, "a newer minor")
H.eq(ok(101, 100), true, "an older patch of the same minor")
H.eq(ok(100, 99), false, "0.0.99 is an older minor than 0.1.0")
local good, msg = ok(200, 100)
H.eq(good, false, "an older minor")
H.check(msg:find("0.1.0 is older than the 0.2.0", 1, true) ~= nil, msg)
good, msg = ok(100, 10100)
H.eq(good, false, "another major")
H.check(msg:find("another major version", 1, true) ~= nil, msg)
H.eq(ok(10100, 100), false, "an older major")

-- Loading against a fake library of another major version fails with that message.
local function load_with(version)
  package.loaded.autograd = nil
  package.loaded.autograd_core = setmetatable({ag_version_number = function() return version end},
                                              {__index = core})
  local r = table.pack(pcall(require, "autograd"))
  package.loaded.autograd_core = core
  package.loaded.autograd = ag
  return table.unpack(r, 1, r.n)
end
local loaded, err = load_with(core.AG_VERSION_NUMBER + 10000)
H.eq(loaded, false, "another major refuses to load")
H.check(type(err) == "string" and err:find("another major version", 1, true) ~= nil, tostring(err))
loaded, err = load_with(core.AG_VERSION_NUMBER - 100)
H.eq(loaded, false, "an older minor refuses to load")
H.check(type(err) == "string" and err:find("is older than", 1, true) ~= nil, tostring(err))
loaded = load_with(core.AG_VERSION_NUMBER + 100)
H.eq(loaded, true, "a newer minor loads")

H.done("version")
