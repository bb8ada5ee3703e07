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

local opts = vim.json.decode(vim.env.FIMLS_TEST_SETUP or '{}')
opts.cmd = vim.json.decode((assert(vim.env.FIMLS_TEST_CMD, 'FIMLS_TEST_CMD not set')))
require('fimls').setup(opts)
