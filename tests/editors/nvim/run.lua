-- Entry point: runs the scenario named by $FIMLS_TEST_SCENARIO from scenarios.lua.
local here = vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':p:h')
package.path = here .. '/?.lua;' .. package.path
local H = require('harness')
local scenarios = require('scenarios')
local name = vim.env.FIMLS_TEST_SCENARIO or ''
local scenario = scenarios[name]
H.run(function()
  assert(scenario, 'unknown scenario: ' .. name)
  scenario(H)
end)
