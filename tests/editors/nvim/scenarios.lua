-- Scenarios for tests/editors/test_neovim.py.  Each one drives the editor like a
-- user (keys through nvim_input) and records what it sees; the Python test
-- makes the assertions.  The file being edited is the one given on the command
-- line; the fake DeepSeek server decides the suggestions.

local S = {}
local api = vim.api

local GHOST_TIMEOUT = 5000

local function wait_ghost(H, expected)
  return H.wait(function()
    local text = H.ghost_text()
    if expected == nil then
      return text ~= nil
    end
    return text == expected
  end, GHOST_TIMEOUT)
end

local function wait_no_ghost(H, ms)
  return H.wait(function()
    return H.ghost() == nil
  end, ms or 2000)
end

local function snapshot(H, name)
  H.step(name, {
    ghost = H.ghost_text() or vim.NIL,
    line = api.nvim_get_current_line(),
    lines = H.lines(),
    cursor = H.cursor(),
    mode = H.mode(),
    requests = H.requests(),
    cancels = H.cancels(),
  })
end

local function attach(H)
  local client = H.client()
  assert(client, 'fimls did not attach')
  H.record('encoding', client.offset_encoding)
  H.record('client_name', client.name)
  return client
end

--- o on line 2, type "ret", the ghost shows the rest, <Tab> accepts, :w saves.
function S.accept(H)
  attach(H)
  api.nvim_win_set_cursor(0, { 2, 0 })
  H.type('oret')
  H.record('ghost_seen', wait_ghost(H))
  H.record('ghost', H.ghost())
  snapshot(H, 'before_tab')
  H.type('<Tab>')
  snapshot(H, 'after_tab')
  H.type('<Esc>:w<CR>', 100)
  snapshot(H, 'saved')
end

--- <Tab> without a suggestion keeps its meaning (literal tab or an older mapping).
function S.tab_fallback(H)
  attach(H)
  H.type('A')
  H.sleep(400) -- let the (empty) automatic request finish
  H.type('a')
  H.sleep(400)
  H.record('ghost_before', H.ghost_text())
  H.type('<Tab>b')
  snapshot(H, 'after_tab')
  H.type('<Esc>')
end

--- Word and line acceptance of a single-line suggestion.
function S.accept_word(H)
  attach(H)
  api.nvim_win_set_cursor(0, { 2, 0 })
  H.type('A')
  H.record('ghost_seen', wait_ghost(H))
  snapshot(H, 'start')
  for i = 1, 4 do
    H.type('<M-Right>')
    snapshot(H, 'word' .. i)
  end
  H.type('<M-l>')
  snapshot(H, 'line')
  H.type('<Esc>')
end

--- A multi-line suggestion: first line inline, the rest as virtual lines;
--- <M-l> takes one line at a time, <Tab> the rest.
function S.multiline(H)
  attach(H)
  api.nvim_win_set_cursor(0, { 2, 0 })
  H.type('A')
  H.record('ghost_seen', wait_ghost(H))
  H.record('ghost', H.ghost())
  snapshot(H, 'start')
  H.type('<M-l>')
  snapshot(H, 'line1')
  H.record('ghost_after_line1', H.ghost())
  H.type('<M-l>')
  snapshot(H, 'line2')
  H.type('<Tab>')
  snapshot(H, 'all')
  H.type('<Esc>')
end

--- Typing the first characters of the suggestion keeps it (trimmed) without
--- asking the server again.
function S.typing_along(H)
  attach(H)
  api.nvim_win_set_cursor(0, { 2, 0 })
  H.type('A')
  H.record('ghost_seen', wait_ghost(H))
  H.sleep(300) -- nothing else in flight
  snapshot(H, 'start')
  for _, ch in ipairs({ 'r', 'e', 't' }) do
    H.type(ch, 60)
    snapshot(H, 'typed_' .. ch)
  end
  H.sleep(400) -- give a (wrong) new request time to show up
  snapshot(H, 'settled')
  H.type('<Esc>')
end

--- <C-e>, cursor moves, typing something else and <Esc> all dismiss.
function S.dismiss(H)
  attach(H)
  api.nvim_win_set_cursor(0, { 2, 0 })
  H.type('A')
  H.record('ghost_seen', wait_ghost(H))
  snapshot(H, 'shown')
  H.type('<C-e>')
  snapshot(H, 'ctrl_e')
  H.sleep(200)
  H.record('ghost_after_ctrl_e', H.ghost_text())
  H.type('<M-\\>') -- ask again explicitly
  H.record('ghost_after_trigger', wait_ghost(H, 'return a + b'))
  H.record('trigger_requests', H.requests())
  H.type('r')
  H.record('ghost_after_r', wait_ghost(H, 'eturn a + b'))
  H.type('x')
  snapshot(H, 'mismatch')
  H.type('<BS>')
  H.record('ghost_after_bs', wait_ghost(H, 'eturn a + b'))
  H.type('<Left>')
  H.record('gone_after_left', wait_no_ghost(H, 100))
  H.sleep(400) -- the server says nothing mid-line
  snapshot(H, 'moved_left')
  H.type('<End>')
  H.record('ghost_after_end', wait_ghost(H, 'eturn a + b'))
  H.type('<Esc>')
  snapshot(H, 'escaped')
end

--- Several suggestions: <M-]> / <M-[> switch between them, <Tab> takes the shown one.
function S.cycle(H)
  attach(H)
  api.nvim_win_set_cursor(0, { 2, 0 })
  H.type('A')
  H.record('ghost_seen', wait_ghost(H))
  snapshot(H, 'first')
  H.type('<M-]>')
  snapshot(H, 'next')
  H.type('<M-]>')
  snapshot(H, 'wrapped')
  H.type('<M-[>')
  snapshot(H, 'prev')
  H.type('<Tab>')
  snapshot(H, 'accepted')
  H.type('<Esc>')
end

--- A slow answer is cancelled when the cursor moves on and never shown.
function S.cancel(H)
  attach(H)
  api.nvim_win_set_cursor(0, { 2, 0 })
  H.type('A')
  H.wait(function()
    return H.requests() >= 1
  end, 2000)
  H.sleep(600) -- well past the server debounce: the slow backend call is running
  H.type('<Up>')
  H.sleep(100)
  snapshot(H, 'moved')
  H.sleep(1500) -- the slow answer would have arrived by now
  snapshot(H, 'later')
  H.type('<Esc>')
end

--- The suggestion replaces the closing bracket right of the cursor.
function S.closers(H)
  attach(H)
  local row = vim.fn.search('print()')
  local line = api.nvim_get_current_line()
  api.nvim_win_set_cursor(0, { row, #line - 1 }) -- on ")"
  H.type('i')
  H.record('ghost_seen', wait_ghost(H))
  H.record('ghost', H.ghost())
  snapshot(H, 'shown')
  H.type('<Tab>')
  snapshot(H, 'accepted')
  H.type('<Esc>')
end

--- Classic completion menu (vim.lsp.completion): a snippet item inserts the
--- whole multi-line text.
function S.classic(H)
  local client = attach(H)
  H.record('snippet_support',
    client.config.capabilities.textDocument.completion.completionItem.snippetSupport)
  api.nvim_win_set_cursor(0, { 2, 0 })
  H.type('A')
  H.type('<Cmd>lua vim.lsp.completion.get()<CR>')
  H.record('pum_seen', H.wait(function()
    return vim.fn.pumvisible() == 1
  end, GHOST_TIMEOUT))
  local info = vim.fn.complete_info({ 'items', 'selected' })
  local words = {}
  for _, item in ipairs(info.items or {}) do
    words[#words + 1] = { word = item.word, abbr = item.abbr, menu = item.menu, kind = item.kind }
  end
  H.record('items', words)
  H.record('ghost_in_classic', H.ghost_text())
  H.type('<C-n>')
  H.type('<C-y>', 200)
  snapshot(H, 'accepted')
  H.type('<Esc>')
  -- autotrigger: a trigger character (space) opens the menu by itself
  H.type('Goif')
  H.type(' ')
  H.record('autotrigger_pum', H.wait(function()
    return vim.fn.pumvisible() == 1
  end, GHOST_TIMEOUT))
  H.type('<C-e><Esc>')
end

--- Ghost text with a non-ASCII line under the utf-16 position encoding.
function S.utf16(H)
  attach(H)
  local row = vim.fn.search('f(')
  local line = api.nvim_get_current_line()
  api.nvim_win_set_cursor(0, { row, #line - 1 }) -- on ")"
  H.type('i')
  H.record('ghost_seen', wait_ghost(H))
  H.record('ghost', H.ghost())
  H.type('<Tab>')
  snapshot(H, 'accepted')
  H.type('<Esc>')
end

--- The screen as a terminal shows it, with a multi-line ghost text.
function S.screenshot(H)
  attach(H)
  vim.o.columns = tonumber(vim.env.FIMLS_TEST_COLUMNS or '72')
  vim.o.lines = tonumber(vim.env.FIMLS_TEST_LINES or '14')
  vim.o.number = true
  local row = vim.fn.search('^    $')
  api.nvim_win_set_cursor(0, { row, 0 })
  H.type('A')
  H.record('ghost_seen', wait_ghost(H))
  H.sleep(100)
  H.record('ghost', H.ghost())
  H.record('screen', H.screen())
  H.record('buffer', H.lines())
  H.type('<Esc>')
end

--- `cmd` is not executable: one error notification however many buffers open, and
--- typing goes on without errors.
function S.missing_cmd(H)
  H.sleep(300) -- the start-up FileType has fired and the scheduled notice has run
  H.record('after_start', vim.deepcopy(_G.fimls_test_notifications))
  vim.cmd('edit second.py')
  vim.cmd('edit third.lua')
  vim.cmd('buffer 1')
  H.type('Aabc')
  H.sleep(300)
  H.type('<Esc>')
  H.record('clients', #vim.lsp.get_clients())
  H.record('ghost', H.ghost_text())
  H.record('filetypes', { vim.bo[1].filetype, vim.fn.getbufvar('second.py', '&filetype'),
    vim.fn.getbufvar('third.lua', '&filetype') })
end

--- FimlsSuggestion's colours with and without 'termguicolors' and across colour schemes.
function S.highlight(H)
  local function hl(name)
    return api.nvim_get_hl(0, { name = name, link = false })
  end
  local function state(name)
    H.step(name, {
      ghost = hl('FimlsSuggestion'),
      ghost_link = api.nvim_get_hl(0, { name = 'FimlsSuggestion' }).link or vim.NIL,
      normal = hl('Normal'),
      comment = hl('Comment'),
      colors_name = vim.g.colors_name or vim.NIL,
      background = vim.o.background,
    })
  end
  vim.o.termguicolors = false
  state('default_cterm')
  vim.o.termguicolors = true
  state('default_gui')
  vim.o.termguicolors = false
  vim.cmd.colorscheme('habamax')
  state('habamax')
  vim.cmd.colorscheme('default')
  state('back_to_default')
  vim.o.background = 'light'
  vim.cmd.colorscheme('default')
  state('default_light')
end

return S
