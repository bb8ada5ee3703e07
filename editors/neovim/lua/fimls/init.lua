--- fimls for Neovim: starts the fimls language server and shows its inline
--- completions (DeepSeek FIM) as ghost text.
---
--- Neovim >= 0.12 uses the built-in `vim.lsp.inline_completion`.  On 0.10 and
--- 0.11 this module draws the ghost text itself from `textDocument/inlineCompletion`
--- answers (extmarks: the first line inline at the cursor, further lines as
--- virtual lines below it).
---
---     require('fimls').setup({ init_options = { debounceMs = 150 } })
---
--- Keys (insert mode, all configurable through `keys`, `false` disables one):
---   <Tab>      accept the whole suggestion (otherwise <Tab> does what it did before)
---   <M-Right>  accept the next word
---   <M-l>      accept the rest of the line (again: the next line)
---   <C-e>      dismiss (leaving insert mode or moving the cursor away dismisses too)
---   <M-\>      ask now (skips the server's debounce)
---   <M-]> <M-[>  next / previous suggestion (with numSuggestions > 1)

local M = {}

local api = vim.api

local AUTOMATIC, INVOKED = 2, 1
local METHOD = 'textDocument/inlineCompletion'
local HAS_011 = vim.fn.has('nvim-0.11') == 1
local HAS_INLINE_VIRT_TEXT = vim.fn.has('nvim-0.10') == 1

local ns = api.nvim_create_namespace('fimls.ghost')
local augroup = api.nvim_create_augroup('fimls', { clear = true })

--- What each mapped key did before fimls mapped it (kept across setup() calls).
local fallbacks = {}

M.defaults = {
  --- LSP client name; also the `vim.lsp.config` name on 0.11+.
  name = 'fimls',
  --- Server command.
  cmd = { 'fimls' },
  --- Filetypes to attach to; nil attaches to every buffer that has a filetype.
  filetypes = nil,
  root_markers = { '.git' },
  --- Sent as `initializationOptions` (camelCase keys: backend, baseUrl, model,
  --- debounceMs, multiline, numSuggestions, ...).
  init_options = {},
  --- Sent on `workspace/didChangeConfiguration` (section `fimls`). fimls ignores
  --- backend, baseUrl, apiKey, apiKeyCommand, apiKeyEnv and allowInsecureHttp
  --- there: put those in `init_options`.
  settings = nil,
  --- Extra client capabilities, merged into Neovim's defaults.
  capabilities = nil,
  --- Called as on_attach(client, bufnr) when fimls attaches to a buffer.
  on_attach = nil,
  --- 'auto' (built-in on 0.12+, this plugin's ghost text before), 'builtin',
  --- 'plugin' (this plugin's ghost text, also on 0.12), or false (no ghost text).
  ghost_text = 'auto',
  --- Classic completion menu through `vim.lsp.completion` (0.11+): false, true
  --- (autotrigger) or a table of options for `vim.lsp.completion.enable`.
  classic = false,
  keys = {
    accept = '<Tab>',
    accept_word = '<M-Right>',
    accept_line = '<M-l>',
    dismiss = '<C-e>',
    trigger = '<M-\\>',
    next = '<M-]>',
    prev = '<M-[>',
  },
  --- Highlight group of the ghost text. FimlsSuggestion is defined with
  --- `default`, so your own `:highlight FimlsSuggestion ...` wins: it links to
  --- Comment when Comment has a terminal colour, else it takes Comment's look
  --- plus a grey `ctermfg`, so ghost text stands out without 'termguicolors' too.
  hl_group = 'FimlsSuggestion',
}

local config = vim.deepcopy(M.defaults)
local enabled = true

---@class fimls.Item
---@field row integer   0-based row where the item's text starts
---@field col integer   byte column where the item's text starts
---@field text string   text the item inserts from (row, col)
---@field closers string buffer text right of the request's cursor that the item replaces

---@class fimls.BufState
---@field client_id integer
---@field items fimls.Item[]?
---@field index integer
---@field extmark integer?
---@field pending { client: table, id: integer }?
---@field seq integer
---@field asked string?  changedtick/cursor of the last automatic request

---@type table<integer, fimls.BufState>
local buffers = {}

-- Unicode helpers ---------------------------------------------------------

--- Bytes of the UTF-8 sequence starting with byte `c`.
local function seq_len(c)
  if c < 0xC0 then
    return 1
  elseif c < 0xE0 then
    return 2
  elseif c < 0xF0 then
    return 3
  end
  return 4
end

--- Byte column -> position units of `encoding` on `line`.
local function to_units(line, col, encoding)
  if encoding == 'utf-8' then
    return col
  end
  local units, byte = 0, 0
  while byte < col and byte < #line do
    local len = seq_len(line:byte(byte + 1))
    units = units + ((encoding == 'utf-16' and len == 4) and 2 or 1)
    byte = byte + len
  end
  return units
end

--- Position units of `encoding` -> byte column on `line`.
local function to_byte(line, units, encoding)
  if encoding == 'utf-8' then
    return math.min(units, #line)
  end
  local count, byte = 0, 0
  while count < units and byte < #line do
    local len = seq_len(line:byte(byte + 1))
    count = count + ((encoding == 'utf-16' and len == 4) and 2 or 1)
    byte = byte + len
  end
  return math.min(byte, #line)
end

-- Small helpers -----------------------------------------------------------

local function termcodes(keys)
  return api.nvim_replace_termcodes(keys, true, false, true)
end

local function in_insert_mode()
  return api.nvim_get_mode().mode:sub(1, 1) == 'i'
end

--- 0-based row and byte column of the cursor.
local function cursor()
  local pos = api.nvim_win_get_cursor(0)
  return pos[1] - 1, pos[2]
end

local function get_line(bufnr, row)
  return api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ''
end

local function client_request(client, params, handler, bufnr)
  if HAS_011 then
    return client:request(METHOD, params, handler, bufnr)
  end
  return client.request(METHOD, params, handler, bufnr)
end

local function client_cancel(client, id)
  if HAS_011 then
    client:cancel_request(id)
  else
    client.cancel_request(id)
  end
end

local function get_client(bufnr)
  local state = buffers[bufnr]
  local client = state and vim.lsp.get_client_by_id(state.client_id)
  if not client then
    return nil
  end
  local stopped
  if HAS_011 then
    stopped = client:is_stopped()
  else
    stopped = client.is_stopped()
  end
  if not stopped then
    return client
  end
end

--- Text with tabs expanded, since virtual text shows a tab as `^I`.
local function detab(text, bufnr)
  if not text:find('\t', 1, true) then
    return text
  end
  return (text:gsub('\t', string.rep(' ', vim.bo[bufnr].tabstop)))
end

-- Suggestion state --------------------------------------------------------

local function current_item(state)
  return state and state.items and state.items[state.index]
end

local function cancel_pending(state)
  if state and state.pending then
    pcall(client_cancel, state.pending.client, state.pending.id)
    state.pending = nil
  end
end

local function hide(bufnr)
  local state = buffers[bufnr]
  if state and state.extmark then
    pcall(api.nvim_buf_del_extmark, bufnr, ns, state.extmark)
    state.extmark = nil
  end
end

--- Forget the suggestion (and stop waiting for one).
local function clear(bufnr)
  local state = buffers[bufnr]
  if not state then
    return
  end
  hide(bufnr)
  cancel_pending(state)
  state.items = nil
  state.index = 1
end

--- What is left of `item` to insert at the cursor, given what the user has
--- typed since it arrived; nil when the buffer no longer agrees with it.
---@return string? rest, integer row, integer col
local function remaining(bufnr, item)
  local row, col = cursor()
  if row < item.row or (row == item.row and col < item.col) then
    return nil, row, col
  end
  local ok, typed = pcall(api.nvim_buf_get_text, bufnr, item.row, item.col, row, col, {})
  if not ok then
    return nil, row, col
  end
  local prefix = table.concat(typed, '\n')
  if #prefix >= #item.text or item.text:sub(1, #prefix) ~= prefix then
    return nil, row, col
  end
  if item.closers ~= '' and get_line(bufnr, row):sub(col + 1, col + #item.closers) ~= item.closers then
    return nil, row, col
  end
  return item.text:sub(#prefix + 1), row, col
end

--- Part of `rest` worth drawing: on a single line the closers the item replaces
--- are already on screen right of the cursor, so they are not drawn twice.
local function visible_part(rest, item)
  if item.closers ~= '' and not rest:find('\n', 1, true) and vim.endswith(rest, item.closers) then
    return rest:sub(1, #rest - #item.closers)
  end
  return rest
end

--- Draw the current suggestion at the cursor; false (and forgotten) when it
--- no longer fits what is in the buffer.
local function render(bufnr)
  local state = buffers[bufnr]
  local item = current_item(state)
  hide(bufnr)
  if not item or not enabled then
    return false
  end
  local rest, row, col = remaining(bufnr, item)
  local shown = rest and visible_part(rest, item) or ''
  if shown == '' then
    state.items = nil
    return false
  end
  local hl = config.hl_group
  local lines = vim.split(shown, '\n', { plain = true })
  local opts = { hl_mode = 'combine', priority = 4096 }
  if lines[1] ~= '' then
    local first = { { detab(lines[1], bufnr), hl } }
    if state.items and #state.items > 1 and #lines == 1 then
      first[2] = { (' (%d/%d)'):format(state.index, #state.items), hl }
    end
    opts.virt_text = first
    opts.virt_text_pos = HAS_INLINE_VIRT_TEXT and 'inline' or 'eol'
  end
  if #lines > 1 then
    local virt_lines = {}
    for i = 2, #lines do
      virt_lines[#virt_lines + 1] = { { detab(lines[i], bufnr), hl } }
    end
    if state.items and #state.items > 1 then
      table.insert(virt_lines[#virt_lines], { (' (%d/%d)'):format(state.index, #state.items), hl })
    end
    opts.virt_lines = virt_lines
  end
  state.extmark = api.nvim_buf_set_extmark(bufnr, ns, row, col, opts)
  return true
end

--- Turn one LSP InlineCompletionItem into an item anchored in the buffer.
---@return fimls.Item?
local function to_item(bufnr, raw, row, col, encoding)
  local text = raw.insertText
  if type(text) == 'table' then
    -- A StringValue snippet: insert it literally, unescaping \$ \} \\.
    text = (text.value or ''):gsub('\\([\\$}])', '%1')
  end
  if type(text) ~= 'string' or text == '' then
    return nil
  end
  local srow, scol, closers = row, col, ''
  if type(raw.range) == 'table' then
    local s, e = raw.range.start, raw.range['end']
    if e.line ~= row then
      return nil
    end
    srow = s.line
    scol = to_byte(get_line(bufnr, srow), s.character, encoding)
    local ecol = to_byte(get_line(bufnr, row), e.character, encoding)
    if srow > row or (srow == row and scol > col) or ecol < col then
      return nil
    end
    closers = get_line(bufnr, row):sub(col + 1, ecol)
  end
  return { row = srow, col = scol, text = text, closers = closers }
end

local function request(bufnr, kind)
  local state = buffers[bufnr]
  local client = get_client(bufnr)
  if not state or not client or not enabled then
    return
  end
  cancel_pending(state)
  local row, col = cursor()
  local line = get_line(bufnr, row)
  local encoding = client.offset_encoding or 'utf-16'
  local params = {
    textDocument = { uri = vim.uri_from_bufnr(bufnr) },
    position = { line = row, character = to_units(line, col, encoding) },
    context = { triggerKind = kind },
  }
  state.seq = state.seq + 1
  local seq = state.seq
  local tick = api.nvim_buf_get_changedtick(bufnr)
  local ok, id = client_request(client, params, function(err, result)
    if state.seq ~= seq then
      return -- a newer request replaced this one
    end
    state.pending = nil
    if err or type(result) ~= 'table' then
      return
    end
    if
      not in_insert_mode()
      or api.nvim_get_current_buf() ~= bufnr
      or api.nvim_buf_get_changedtick(bufnr) ~= tick
    then
      return
    end
    local now_row, now_col = cursor()
    if now_row ~= row or now_col ~= col then
      return
    end
    local items = {}
    for _, raw in ipairs(result.items or result) do
      local item = to_item(bufnr, raw, row, col, encoding)
      if item then
        items[#items + 1] = item
      end
    end
    if #items > 0 then
      state.items, state.index = items, 1
      render(bufnr)
    end
  end, bufnr)
  if ok and id then
    state.pending = { client = client, id = id }
  end
end

--- Text changed or cursor moved in insert mode.
local function on_change(bufnr)
  local state = buffers[bufnr]
  if not state or not enabled or not in_insert_mode() or api.nvim_get_current_buf() ~= bufnr then
    return
  end
  if current_item(state) and render(bufnr) then
    cancel_pending(state) -- still typing along the shown suggestion
    return
  end
  hide(bufnr)
  local row, col = cursor()
  local key = ('%d:%d:%d'):format(api.nvim_buf_get_changedtick(bufnr), row, col)
  if state.asked == key then
    return -- already asked about exactly this state
  end
  state.asked = key
  request(bufnr, AUTOMATIC)
end

-- Public API --------------------------------------------------------------

--- True when a suggestion is visible in the current buffer.
function M.is_visible()
  local state = buffers[api.nvim_get_current_buf()]
  return state ~= nil and state.extmark ~= nil
end

--- The text that accepting would insert now (nil when nothing is shown).
function M.suggestion()
  local bufnr = api.nvim_get_current_buf()
  local item = current_item(buffers[bufnr])
  if not item or not M.is_visible() then
    return nil
  end
  return (remaining(bufnr, item))
end

local function next_word(rest)
  if rest:sub(1, 1) == '\n' then
    return rest:match('^\n[ \t]*')
  end
  return rest:match('^[ \t]*[%w_\128-\255]+')
    or rest:match('^[ \t]*[^%w_\128-\255%s]+')
    or rest:match('^[ \t]+')
    or rest:sub(1, 1)
end

local function next_line(rest)
  if rest:sub(1, 1) == '\n' then
    return '\n' .. rest:sub(2):match('^[^\n]*')
  end
  return rest:match('^[^\n]*')
end

--- Insert (part of) the suggestion. `how` is 'all', 'word' or 'line'.
--- Returns true when something was inserted.
local function accept(how)
  local bufnr = api.nvim_get_current_buf()
  local state = buffers[bufnr]
  local item = current_item(state)
  if not item or not state.extmark then
    return false
  end
  local rest, row, col = remaining(bufnr, item)
  if not rest then
    clear(bufnr)
    return false
  end
  local chunk = rest
  if how == 'word' then
    chunk = next_word(rest)
  elseif how == 'line' then
    chunk = next_line(rest)
  end
  local lines = vim.split(chunk, '\n', { plain = true })
  local whole = chunk == rest or visible_part(rest, item) == chunk
  hide(bufnr)
  if whole then
    -- The whole suggestion replaces the closers right of the cursor.
    chunk = rest
    lines = vim.split(rest, '\n', { plain = true })
    state.items = nil
    api.nvim_buf_set_text(bufnr, row, col, row, col + #item.closers, lines)
  else
    api.nvim_buf_set_text(bufnr, row, col, row, col, lines)
  end
  local end_row = row + #lines - 1
  local end_col = (#lines == 1 and col or 0) + #lines[#lines]
  api.nvim_win_set_cursor(0, { end_row + 1, end_col })
  if not whole then
    render(bufnr)
  end
  return true
end

function M.accept()
  return accept('all')
end

function M.accept_word()
  return accept('word')
end

function M.accept_line()
  return accept('line')
end

--- Hide the suggestion; true when one was visible.
function M.dismiss()
  local bufnr = api.nvim_get_current_buf()
  local visible = M.is_visible()
  clear(bufnr)
  return visible
end

--- Ask for a suggestion now (trigger kind Invoked: no server debounce).
function M.trigger()
  local bufnr = api.nvim_get_current_buf()
  if buffers[bufnr] then
    clear(bufnr)
    request(bufnr, INVOKED)
  end
end

local function cycle(step)
  local bufnr = api.nvim_get_current_buf()
  local state = buffers[bufnr]
  if not state or not state.items or #state.items < 2 or not state.extmark then
    return false
  end
  state.index = (state.index - 1 + step) % #state.items + 1
  return render(bufnr)
end

function M.next()
  return cycle(1)
end

function M.prev()
  return cycle(-1)
end

--- Turn the ghost text on or off (all buffers).
function M.toggle(on)
  if on == nil then
    on = not enabled
  end
  enabled = on
  if not on then
    for bufnr in pairs(buffers) do
      clear(bufnr)
    end
  end
  return enabled
end

-- Attaching -----------------------------------------------------------------

local function attach_ghost(client, bufnr)
  if buffers[bufnr] then
    buffers[bufnr].client_id = client.id
    return
  end
  buffers[bufnr] = { client_id = client.id, index = 1, seq = 0 }
  api.nvim_create_autocmd({ 'TextChangedI', 'TextChangedP', 'CursorMovedI' }, {
    group = augroup,
    buffer = bufnr,
    callback = function(args)
      on_change(args.buf)
    end,
  })
  api.nvim_create_autocmd('InsertEnter', {
    group = augroup,
    buffer = bufnr,
    callback = function(args)
      -- The cursor and mode are final only after the command that entered
      -- insert mode (`a`, `A`, `o`...) is done.
      vim.schedule(function()
        on_change(args.buf)
      end)
    end,
  })
  api.nvim_create_autocmd({ 'InsertLeave', 'BufLeave' }, {
    group = augroup,
    buffer = bufnr,
    callback = function(args)
      clear(args.buf)
      if buffers[args.buf] then
        buffers[args.buf].asked = nil
      end
    end,
  })
end

local function detach_ghost(bufnr)
  if buffers[bufnr] then
    clear(bufnr)
    buffers[bufnr] = nil
    api.nvim_clear_autocmds({ group = augroup, buffer = bufnr })
  end
end

local function use_builtin()
  local builtin = vim.lsp.inline_completion ~= nil and vim.lsp.inline_completion.enable ~= nil
  if config.ghost_text == 'builtin' then
    return builtin
  end
  return config.ghost_text == 'auto' and builtin
end

local function on_attach(client, bufnr)
  if config.ghost_text and use_builtin() then
    vim.lsp.inline_completion.enable(true, { bufnr = bufnr })
  elseif config.ghost_text then
    attach_ghost(client, bufnr)
  end
  if config.classic and vim.lsp.completion then
    local opts = type(config.classic) == 'table' and config.classic or { autotrigger = true }
    vim.lsp.completion.enable(true, client.id, bufnr, opts)
  end
  if config.on_attach then
    config.on_attach(client, bufnr)
  end
end

-- Keys ----------------------------------------------------------------------

--- A function that does what `lhs` did in insert mode before we mapped it.
local function fallback_for(lhs)
  local old = vim.fn.maparg(lhs, 'i', false, true)
  if type(old) ~= 'table' or vim.tbl_isempty(old) or old.buffer == 1 then
    old = nil
  end
  return function()
    -- 'i': the keys go before anything already typed after `lhs`.
    if not old then
      api.nvim_feedkeys(termcodes(lhs), 'ni', false)
      return
    end
    local keys
    if old.callback then
      keys = old.callback()
      if old.expr ~= 1 or type(keys) ~= 'string' then
        return
      end
      if old.replace_keycodes == 1 then
        keys = termcodes(keys)
      end
    elseif old.expr == 1 then
      keys = api.nvim_eval(old.rhs)
    else
      keys = termcodes(old.rhs)
    end
    if keys ~= '' then
      api.nvim_feedkeys(keys, old.noremap == 1 and 'ni' or 'mi', false)
    end
  end
end

local function map(lhs, action, desc)
  if not lhs or lhs == '' then
    return
  end
  fallbacks[lhs] = fallbacks[lhs] or fallback_for(lhs)
  local fallback = fallbacks[lhs]
  vim.keymap.set('i', lhs, function()
    if not action() then
      fallback()
    end
  end, { desc = desc, silent = true })
end

local function set_keys()
  local keys = config.keys or {}
  if use_builtin() then
    map(keys.accept, function()
      return vim.lsp.inline_completion.get() == true
    end, 'fimls: accept suggestion')
    map(keys.next, function()
      vim.lsp.inline_completion.select({ count = 1 })
      return true
    end, 'fimls: next suggestion')
    map(keys.prev, function()
      vim.lsp.inline_completion.select({ count = -1 })
      return true
    end, 'fimls: previous suggestion')
    return
  end
  map(keys.accept, M.accept, 'fimls: accept suggestion')
  map(keys.accept_word, M.accept_word, 'fimls: accept next word')
  map(keys.accept_line, M.accept_line, 'fimls: accept next line')
  map(keys.dismiss, function()
    local dismissed = M.dismiss()
    -- With the completion menu open the key should still reach it.
    return dismissed and vim.fn.pumvisible() == 0
  end, 'fimls: dismiss suggestion')
  map(keys.trigger, function()
    M.trigger()
    return true
  end, 'fimls: suggest now')
  map(keys.next, M.next, 'fimls: next suggestion')
  map(keys.prev, M.prev, 'fimls: previous suggestion')
end

-- Starting the server -------------------------------------------------------

local is_list = vim.islist or vim.tbl_islist

--- Deep merge where lists (e.g. positionEncodings) replace instead of merging by index.
local function merge(base, extra)
  if type(base) ~= 'table' or type(extra) ~= 'table' or is_list(extra) then
    return extra
  end
  local out = vim.deepcopy(base)
  for key, value in pairs(extra) do
    out[key] = merge(out[key], value)
  end
  return out
end

local function client_config()
  local capabilities = vim.lsp.protocol.make_client_capabilities()
  if config.capabilities then
    capabilities = merge(capabilities, config.capabilities)
  end
  return {
    cmd = config.cmd,
    init_options = config.init_options,
    settings = config.settings,
    capabilities = capabilities,
  }
end

--- True when fimls would start for `bufnr` (a file buffer of one of `filetypes`).
local function wants(bufnr)
  if vim.bo[bufnr].buftype ~= '' or vim.bo[bufnr].filetype == '' then
    return false
  end
  return not config.filetypes or vim.tbl_contains(config.filetypes, vim.bo[bufnr].filetype)
end

--- Server commands already reported as not executable (each is reported once).
local reported_missing = {}

--- False when `cmd` cannot run; the first time for a command, says so and how to fix it.
--- (Neovim itself only writes this to its LSP log, so without it typing just shows nothing.)
local function cmd_ok()
  local cmd = config.cmd
  if type(cmd) ~= 'table' or type(cmd[1]) ~= 'string' then
    return true -- a function (0.11+ custom transport): Neovim checks it
  end
  if vim.fn.executable(cmd[1]) == 1 then
    return true
  end
  if not reported_missing[cmd[1]] then
    reported_missing[cmd[1]] = true
    local message = ('fimls: cannot start the language server: %q is not an executable program (on $PATH or '
      .. 'as a path). Install fimls and put it on $PATH, or point `cmd` at it: '
      .. "require('fimls').setup({ cmd = { '/path/to/fimls' } })"):format(cmd[1])
    -- Scheduled: at start-up, after the screen is drawn rather than before.
    vim.schedule(function()
      vim.notify(message, vim.log.levels.ERROR)
    end)
  end
  return false
end

local function start_010(bufnr)
  if not wants(bufnr) or not cmd_ok() then
    return
  end
  local name = api.nvim_buf_get_name(bufnr)
  local root = vim.fs.root and vim.fs.root(bufnr, config.root_markers)
  local spec = client_config()
  spec.name = config.name
  spec.root_dir = root or (name ~= '' and vim.fs.dirname(name)) or vim.fn.getcwd()
  vim.lsp.start(spec, { bufnr = bufnr })
end

--- Greys for ghost text where Comment has no colour of its own: #808080 reads as
--- "not code yet" on dark and light backgrounds alike (244 is it in the 256-colour palette).
local GHOST_GUI_GREY = 0x808080
local GHOST_CTERM_GREY = 244

--- Defines FimlsSuggestion (again after a colour scheme change cleared it). Neovim's
--- default scheme gives Comment a GUI colour only, so a plain link to Comment would look
--- like code in a terminal without 'termguicolors'.
local function heal_highlight()
  local comment = api.nvim_get_hl(0, { name = 'Comment', link = false })
  if comment.fg and comment.ctermfg then
    api.nvim_set_hl(0, 'FimlsSuggestion', { link = 'Comment', default = true })
    return
  end
  api.nvim_set_hl(0, 'FimlsSuggestion', {
    fg = comment.fg or GHOST_GUI_GREY,
    ctermfg = comment.ctermfg or GHOST_CTERM_GREY,
    italic = comment.italic,
    cterm = comment.cterm,
    default = true,
  })
end

--- Configure and start fimls. See `M.defaults` for the options.
function M.setup(opts)
  -- Calling setup() again starts over.
  for bufnr in pairs(buffers) do
    detach_ghost(bufnr)
  end
  augroup = api.nvim_create_augroup('fimls', { clear = true })
  config = vim.tbl_deep_extend('force', vim.deepcopy(M.defaults), opts or {})
  if opts and opts.keys == false then
    config.keys = {}
  end
  heal_highlight()
  api.nvim_create_autocmd('ColorScheme', { group = augroup, callback = heal_highlight })

  api.nvim_create_autocmd('LspAttach', {
    group = augroup,
    callback = function(args)
      local client = vim.lsp.get_client_by_id(args.data.client_id)
      if client and client.name == config.name then
        on_attach(client, args.buf)
      end
    end,
  })
  api.nvim_create_autocmd('LspDetach', {
    group = augroup,
    callback = function(args)
      local state = buffers[args.buf]
      if state and state.client_id == args.data.client_id then
        detach_ghost(args.buf)
      end
    end,
  })

  if config.ghost_text then
    set_keys()
  end

  api.nvim_create_user_command('FimlsStatus', function()
    local client = vim.lsp.get_clients({ name = config.name })[1]
    if not client then
      vim.notify('fimls is not running', vim.log.levels.WARN)
      return
    end
    local function show(err, result)
      vim.notify(err and ('fimls: ' .. (err.message or vim.inspect(err))) or vim.inspect(result))
    end
    local params = { command = 'fimls.status', arguments = {} }
    if HAS_011 then
      client:request('workspace/executeCommand', params, show)
    else
      client.request('workspace/executeCommand', params, show)
    end
  end, { desc = 'Show the fimls server status' })
  api.nvim_create_user_command('FimlsToggle', function()
    vim.notify('fimls ghost text ' .. (M.toggle() and 'on' or 'off'))
  end, { desc = 'Turn fimls ghost text on or off' })

  -- `_legacy_start` forces the 0.10 path (vim.lsp.start on FileType); tests use it.
  if HAS_011 and vim.lsp.config and not config._legacy_start then
    local spec = client_config()
    spec.filetypes = config.filetypes
    spec.root_markers = config.root_markers
    vim.lsp.config(config.name, spec)
    vim.lsp.enable(config.name)
    -- vim.lsp.enable skips a missing command without a word: tell the user.
    api.nvim_create_autocmd('FileType', {
      group = augroup,
      callback = function(args)
        if wants(args.buf) then
          cmd_ok()
        end
      end,
    })
    if vim.v.vim_did_enter == 1 then
      for _, bufnr in ipairs(api.nvim_list_bufs()) do
        if api.nvim_buf_is_loaded(bufnr) and wants(bufnr) and not cmd_ok() then
          break
        end
      end
    end
  else
    api.nvim_create_autocmd('FileType', {
      group = augroup,
      callback = function(args)
        start_010(args.buf)
      end,
    })
    if vim.v.vim_did_enter == 1 then
      for _, bufnr in ipairs(api.nvim_list_bufs()) do
        if api.nvim_buf_is_loaded(bufnr) and vim.bo[bufnr].filetype ~= '' then
          start_010(bufnr)
        end
      end
    end
  end
end

return M
