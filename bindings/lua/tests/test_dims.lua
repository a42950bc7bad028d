-- The 1-based convention: dims d > 0 count from 1, negative dims from the end, 0 is an error;
-- positions, index tensors and returned indices are 1-based. Expected values from PyTorch
-- (shifted by one where they are indices).
local H = dofile((arg[0]:match("(.*/)") or "./") .. "harness.lua")
local ag = require("autograd")
local F = ag.nn.functional

local x = ag.arange(12.0):reshape(3, 4) -- [[0..3], [4..7], [8..11]]

-- dims
H.eq(x:sum(1):tolist(), {12.0, 15.0, 18.0, 21.0}, "sum(1) reduces the first dim")
H.eq(x:sum(2):tolist(), {6.0, 22.0, 38.0}, "sum(2)")
H.eq(x:sum(-1):tolist(), {6.0, 22.0, 38.0}, "sum(-1) is the last dim")
H.eq(x:sum({1, 2}):item(), 66.0, "sum over a table of dims")
H.eq(x:sum(1, true).shape, {1, 4}, "keepdim")
H.eq(x:mean(2):tolist(), {1.5, 5.5, 9.5})
H.near(x:softmax(-1)[1]:tolist(), {0.0321, 0.0871, 0.2369, 0.6439}, "softmax(-1)", 1e-3)
H.near(x:softmax(2)[1]:tolist(), {0.0321, 0.0871, 0.2369, 0.6439}, "softmax(2)", 1e-3)
H.eq(x:transpose(1, 2).shape, {4, 3})
H.eq(x:permute(2, 1).shape, {4, 3})
H.eq(x:unsqueeze(1).shape, {1, 3, 4})
H.eq(x:unsqueeze(-1).shape, {3, 4, 1})
H.eq(x:unsqueeze(3).shape, {3, 4, 1})
H.eq(x:flatten().shape, {12})
H.eq(ag.zeros(2, 1, 3):squeeze(2).shape, {2, 3})
H.eq(ag.cat({x, x}, 1).shape, {6, 4})
H.eq(ag.cat({x, x}, 2).shape, {3, 8})
H.eq(ag.stack({x, x}, 1).shape, {2, 3, 4})
H.eq(ag.stack({x, x}, -1).shape, {3, 4, 2})
H.eq(#x:split(2, 2), 2)
H.eq(x:split(2, 2)[2]:tolist(), {{2.0, 3.0}, {6.0, 7.0}, {10.0, 11.0}})
H.eq(#x:chunk(3, 1), 3)
H.eq(x:size(1), 3)
H.eq(x:size(-1), 4)
H.eq(x:stride(1), 4)
H.eq(x:stride(), {4, 1})
H.raises(function() x:sum(0) end, "dim 0 is invalid")
H.raises(function() x:softmax(0) end, "1-based")

-- Out-of-range dims are reported as the caller wrote them, not as the 0-based dims C sees.
local RANGE_3x4 = "is out of range for a 2-d tensor (expected 1 to 2, or -2 to -1)"
H.raises(function() x:sum(3) end, "dim 3 " .. RANGE_3x4)
H.raises(function() x:sum({1, -3}) end, "dim -3 " .. RANGE_3x4, "in a table of dims")
H.raises(function() x:softmax(3) end, "dim 3 " .. RANGE_3x4)
H.raises(function() x:transpose(1, 3) end, "dim 3 " .. RANGE_3x4)
H.raises(function() x:argmax(3) end, "dim 3 " .. RANGE_3x4)
H.raises(function() x:max(3) end, "dim 3 " .. RANGE_3x4)
H.raises(function() x:squeeze(3) end, "dim 3 " .. RANGE_3x4)
H.raises(function() x:flatten(1, 3) end, "dim 3 " .. RANGE_3x4)
H.raises(function() x:size(3) end, "dim 3 " .. RANGE_3x4)
H.raises(function() x:stride(-3) end, "dim -3 " .. RANGE_3x4)
H.raises(function() x:split(2, 3) end, "dim 3 " .. RANGE_3x4)
H.raises(function() ag.cat({x, x}, 3) end, "dim 3 " .. RANGE_3x4)
H.raises(function() x:unsqueeze(4) end, "dim 4 is out of range for a 2-d tensor (expected 1 to 3, or -3 to -1)",
         "unsqueeze may name one dim past the last")
H.raises(function() ag.stack({x, x}, 4) end, "dim 4 is out of range for a 2-d tensor (expected 1 to 3")
H.raises(function() ag.tensor(1.0):sum(2) end, "dim 2 is out of range for a 0-d tensor",
         "a 0-d tensor takes dim 1 or -1")
H.eq(ag.tensor(1.0):sum(1):item(), 1.0, "sum(1) of a 0-d tensor")
H.eq(ag.tensor(1.0):sum(-1):item(), 1.0, "sum(-1) of a 0-d tensor")
H.raises(function() x:sum(1.5) end, "dim must be an integer, got 1.5")
H.eq(x:sum(2.0):tolist(), {6.0, 22.0, 38.0}, "an integral float is a dim")
local _, err = pcall(function() x:sum(3) end)
H.eq(ag.last_status(), "AG_ERANGE", "the status of a dim out of range")
H.eq(err:match("^([^:]+):%d+:"), arg[0], "the error names the caller's line")

-- positions
H.eq(x:select(1, 1):tolist(), {0.0, 1.0, 2.0, 3.0}, "select(1, 1) is the first row")
H.eq(x:select(2, -1):tolist(), {3.0, 7.0, 11.0}, "select(2, -1) is the last column")
H.eq(x[3]:tolist(), {8.0, 9.0, 10.0, 11.0}, "t[3] is the third row")
H.eq(x:narrow(2, 2, 2):tolist(), {{1.0, 2.0}, {5.0, 6.0}, {9.0, 10.0}}, "narrow(2, 2, 2)")
H.eq(x:slice(2, 2, 3):tolist(), {{1.0, 2.0}, {5.0, 6.0}, {9.0, 10.0}}, "slice stops inclusively")
H.eq(x:slice(2, -2):tolist(), {{2.0, 3.0}, {6.0, 7.0}, {10.0, 11.0}}, "slice(-2) to the end")
H.eq(x:slice(2, 1, -1, 2):tolist(), {{0.0, 2.0}, {4.0, 6.0}, {8.0, 10.0}}, "slice with a step")
H.eq(x:slice(1, 1, 0).shape, {0, 4}, "stop 0 is empty")
H.raises(function() x:select(1, 0) end, "index 0 is invalid")
H.raises(function() x:select(1, 4) end, "index 4 is out of range for dim 1 of size 3 (expected 1 to 3, or -3 to -1)")
H.raises(function() x:select(-1, -5) end, "index -5 is out of range for dim 2 of size 4")
H.raises(function() return x[4] end, "index 4 is out of range for dim 1 of size 3")
H.raises(function() x[-4] = 1 end, "index -4 is out of range for dim 1 of size 3")
H.eq(x[-1]:tolist(), {8.0, 9.0, 10.0, 11.0}, "t[-1] is the last row")
H.raises(function() x:narrow(2, 6, 0) end, "start 6 is out of range for dim 2 of size 4 (expected 1 to 5")
-- a dim named twice is reported as written (1-based), 2 and -1 of a 2-d tensor being one dim
local m2 = ag.zeros(2, 3)
H.raises(function() m2:sum({1, 1}) end, "dim 1 appears multiple times in the list of dims")
H.raises(function() m2:mean({2, -1}) end, "dim 2 appears multiple times in the list of dims")
H.raises(function() m2:amax({-2, 1}) end, "dim 1 appears multiple times in the list of dims")
-- an empty dimension: narrow takes start 1 or -1 (PyTorch's 0 and -1), select nothing
local e = ag.zeros(2, 0)
H.eq(e:narrow(2, -1, 0):size(2), 0)
H.eq(e:narrow(2, 1, 0):size(2), 0)
H.raises(function() e:narrow(2, 2, 0) end, "start 2 is out of range for dim 2 of size 0 (expected 1 or -1)")
H.raises(function() e:select(2, 1) end, "index 1 is out of range for dim 2 of size 0 (the dimension is empty)")
H.eq(x:narrow(2, 5, 0).shape, {3, 0}, "narrow may start just past the end with length 0")
H.raises(function() x:narrow(2, 3, 3) end, "narrow(): start 3 + length 3 exceeds the size 4 of dim 2")
H.raises(function() x:narrow(2, -1, 2) end, "narrow(): start -1 + length 2 exceeds the size 4 of dim 2")
H.raises(function() x:narrow(2, 1, -1) end, "narrow(): length must be non-negative, got -1")

-- index tensors and returned indices
H.eq(x:index_select(1, ag.tensor({3, 1})):tolist(), {{8.0, 9.0, 10.0, 11.0}, {0.0, 1.0, 2.0, 3.0}})
H.eq(x:index_select(1, {3, 1}):tolist(), {{8.0, 9.0, 10.0, 11.0}, {0.0, 1.0, 2.0, 3.0}}, "a Lua table of indices")
H.eq(x:gather(2, ag.tensor({{1}, {4}, {2}})):tolist(), {{0.0}, {7.0}, {9.0}})
H.eq(ag.zeros(3):scatter_add(1, ag.tensor({1, 3, 3}), ag.tensor({1.0, 2.0, 3.0})):tolist(), {1.0, 0.0, 5.0})
H.eq(F.embedding(ag.tensor({3, 1}), ag.arange(6.0):reshape(3, 2)):tolist(), {{4.0, 5.0}, {0.0, 1.0}})
H.eq(x:argmax(2):tolist(), {4, 4, 4}, "argmax is 1-based")
H.eq(x:argmax():item(), 12, "argmax of all elements")
H.eq(x:argmin():item(), 1)
local v, i = x:max(1)
H.eq(v:tolist(), {8.0, 9.0, 10.0, 11.0})
H.eq(i:tolist(), {3, 3, 3, 3}, "max(dim) indices are 1-based")
local _, j = x:min(2)
H.eq(j:tolist(), {1, 1, 1})
local logits = ag.tensor({{1.0, 2.0, 3.0}, {1.0, 5.0, 1.0}})
H.near(F.cross_entropy(logits, ag.tensor({3, 2})):item(), 0.2218, "cross_entropy targets are 1-based", 1e-3)
H.near(F.cross_entropy(logits, ag.tensor({3, -100})):item(), 0.4076, "ignore_index -100", 1e-3)
H.near(F.cross_entropy(logits, ag.tensor({3, 2}), {ignore_index = 2}):item(), 0.4076,
       "ignore_index is a 1-based class", 1e-3)
H.near(F.nll_loss(logits:log_softmax(2), ag.tensor({3, 2})):item(), 0.2218, "nll_loss", 1e-3)
-- An index out of range is named as the caller wrote it, with its dim 1-based.
H.raises(function() x:index_select(1, ag.tensor({4})) end,
         "ag_index_select: index 4 is out of bounds for dimension 1 with size 3", "index past the end")
H.raises(function() x:index_select(2, {0}) end, "index 0 is out of bounds for dimension 2 with size 4")
H.raises(function() x:gather(2, ag.tensor({{1}, {5}, {2}})) end,
         "ag_gather: index 5 is out of bounds for dimension 2 with size 4")
H.raises(function() ag.zeros(3):scatter_add(1, ag.tensor({4}), ag.tensor({1.0})) end,
         "ag_scatter_add: index 4 is out of bounds for dimension 1 with size 3")
H.raises(function() F.embedding(ag.tensor({4}), ag.zeros(3, 2)) end,
         "ag_embedding: index out of range in self (index 4, 3 embeddings)")
H.raises(function() F.cross_entropy(logits, ag.tensor({4, 1})) end, "ag_cross_entropy: Target 4 is out of bounds.")
H.raises(function() F.nll_loss(logits, ag.tensor({0, 1})) end, "ag_nll_loss: Target 0 is out of bounds. (class indices are 1-based)")
H.eq(ag.last_status(), "AG_ERANGE", "a reworded error keeps its status")
H.eq(ag.core.ag_last_error(), "ag_nll_loss: Target 0 is out of bounds. (class indices are 1-based)", "and the thread's message is the reworded one")
H.raises(function() x:index_select(1, ag.tensor({1.5})) end, "ag_index_select", "other errors pass through")

-- gradients flow through the converted indices
local w = ag.arange(6.0):reshape(3, 2):requires_grad_()
F.embedding(ag.tensor({3, 3, 1}), w):sum():backward()
H.eq(w.grad:tolist(), {{1.0, 1.0}, {0.0, 0.0}, {2.0, 2.0}})

H.done("dims")
