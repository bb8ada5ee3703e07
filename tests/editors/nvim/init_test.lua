-- Config for the Neovim tests: the fimls plugin from this repo, set up with
-- options from $FIMLS_TEST_SETUP (JSON) and the server command from $FIMLS_TEST_CMD.
local repo = assert(vim.env.FIMLS_REPO, 'FIMLS_REPO not set')
vim.opt.runtimepath:prepend(repo .. '/editors/neovim')
vim.opt.completeopt = { 'menuone', 'noselect' }

if vim.env.FIMLS_TEST_PREMAP == '1' then
  -- A mapping that existed before fimls: <Tab> must still reach it.
  vim.keymap.set('i', '<Tab>', function()
    return '[tab]'
  end, { expr = true })
end

if vim.env.FIMLS_TEST_PREHL == '1' then
  -- A user's own ghost text colour, set before fimls: it must survive setup().
  vim.api.nvim_set_hl(0, 'FimlsSuggestion', { fg = 0x123456, ctermfg = 99 })
end

-- Every vim.notify call, for the scenarios to check (installed before setup()).
_G.fimls_test_notifications = {}
local notify = vim.notify
vim.notify = function(msg, level, o)
  table.insert(_G.fimls_test_notifications, { msg = msg, level = level or vim.NIL })
  return notify(msg, level, o)
end

local opts = vim.json.decode(vim.env.FIMLS_TEST_SETUP or '{}')
opts.cmd = vim.json.decode((assert(vim.env.FIMLS_TEST_CMD, 'FIMLS_TEST_CMD not set')))
require('fimls').setup(opts)
