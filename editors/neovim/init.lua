-- Minimal Neovim config for fimls (Neovim 0.10 or newer).
-- Try it: nvim --clean -u editors/neovim/init.lua some_file.py
-- Needs `fimls` on PATH (or FIMLS_CMD="python -m fimls") and DEEPSEEK_API_KEY.

-- The fimls plugin is the directory of this file (editors/neovim in the fimls
-- repo). With a plugin manager, add that directory as a local plugin instead.
local plugin_dir = vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':p:h')
vim.opt.runtimepath:prepend(plugin_dir)

vim.opt.completeopt = { 'menuone', 'noselect', 'popup' }

require('fimls').setup({
  cmd = vim.env.FIMLS_CMD and vim.split(vim.env.FIMLS_CMD, '%s+', { trimempty = true }) or { 'fimls' },
  -- filetypes = { 'python', 'lua' }, -- default: every buffer that has a filetype
  init_options = { -- fimls settings (camelCase), sent as initializationOptions
    -- apiKey = '...', -- better: export DEEPSEEK_API_KEY
    -- backend = 'ollama', -- a local model instead of DeepSeek (README: Backends)
    debounceMs = 150, -- longest wait after a keystroke; Neovim 0.12 waits 200 ms itself
    multiline = 'auto', -- 'auto' | 'always' | 'never'
  },
  -- Ghost text: built-in vim.lsp.inline_completion on 0.12+, the plugin's own
  -- on 0.10/0.11. 'plugin' forces the plugin's (word/line accept), false: none.
  ghost_text = 'auto',
  -- Also offer fimls in the completion menu (vim.lsp.completion, 0.11+):
  -- classic = { autotrigger = true },
  keys = {
    accept = '<Tab>', -- without a suggestion, <Tab> keeps its old meaning
    accept_word = '<M-Right>',
    accept_line = '<M-l>',
    dismiss = '<C-e>',
    trigger = '<M-\\>',
    next = '<M-]>',
    prev = '<M-[>',
  },
})
