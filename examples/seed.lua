-- seed.lua: the seed walkthrough in Lua. y = x * x, z = 2 * y + 5, z:backward(): dz/dx = 4x = 8.
-- Prints exactly what PyTorch (and examples/seed.c) print for the same four expressions.
-- Run from the build tree: see bindings/lua/README.md for LUA_PATH and LUA_CPATH.
local ag = require("autograd")

local x = ag.tensor(2.0, {requires_grad = true})
local y = x * x
local z = 2 * y + 5
z:backward()
print("x = " .. tostring(x))
print("y = " .. tostring(y))
print("z = " .. tostring(z))
print("x.grad = " .. tostring(x.grad))
