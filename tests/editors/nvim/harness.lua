-- Test harness for driving a headless Neovim from a Lua scenario.
--
-- A scenario is a function run inside a coroutine.  `H.wait`/`H.sleep` suspend
-- it on a timer, so Neovim's main loop keeps running meanwhile: keys queued with
-- `H.type` (nvim_input) are processed exactly like typed keys, autocommands fire
-- and LSP messages are handled.  Results go to the JSON file named by
-- $FIMLS_TEST_OUT; Neovim quits when the scenario ends (or fails).

local H = {}

local api = vim.api
local uv = vim.uv or vim.loop

H.result = { steps = {}, errors = {} }
H.lsp_requests = {}
H.lsp_cancels = {}

--- Count LSP requests by method (LspRequest fires for every state change).
api.nvim_create_autocmd('LspRequest', {
  callback = function(args)
    local req = args.data and args.data.request
    if req and req.type == 'pending' then
      H.lsp_requests[req.method] = (H.lsp_requests[req.method] or 0) + 1
    elseif req and req.type == 'cancel' then
      H.lsp_cancels[req.method] = (H.lsp_cancels[req.method] or 0) + 1
    end
  end,
})

function H.requests(method)
  return H.lsp_requests[method or 'textDocument/inlineCompletion'] or 0
end

function H.cancels(method)
  return H.lsp_cancels[method or 'textDocument/inlineCompletion'] or 0
end

--- Suspend the scenario until pred() is truthy or `timeout` ms pass.
function H.wait(pred, timeout, interval)
  local co = assert(coroutine.running(), 'H.wait outside a scenario')
  local deadline = uv.now() + (timeout or 5000)
  local function poll()
    local ok, value = pcall(pred)
    if ok and value then
      coroutine.resume(co, true)
    elseif uv.now() >= deadline then
      coroutine.resume(co, false)
    else
      vim.defer_fn(poll, interval or 10)
    end
  end
  vim.defer_fn(poll, 0)
  return coroutine.yield()
end

function H.sleep(ms)
  H.wait(function()
    return false
  end, ms)
end

-- A key typed after the test's keys: once its mapping has run, Neovim has
-- processed everything before it (and, with the input queue empty, has fired
-- TextChangedI/CursorMovedI before any timer runs).
local SYNC = '<Plug>(fimls-test-sync)'
local synced = false
vim.keymap.set({ 'n', 'i', 'c', 'v' }, SYNC, function()
  synced = true
end)

--- Queue keys as typed input and wait until Neovim has processed them.
function H.type(keys, settle)
  synced = false
  api.nvim_input(keys .. SYNC)
  if not H.wait(function()
    return synced
  end, 5000, 5) then
    error('keys not processed in time: ' .. keys)
  end
  H.sleep(settle or 20)
end

local function json_value(value)
  if value == nil then
    return vim.NIL
  end
  return value
end

function H.record(name, value)
  H.result[name] = json_value(value)
end

function H.step(name, value)
  table.insert(H.result.steps, { name = name, value = json_value(value) })
end

function H.lines(bufnr)
  return api.nvim_buf_get_lines(bufnr or 0, 0, -1, false)
end

--- The fimls ghost text in the current buffer: { text = <first line .. "\n" ..
--- further lines>, row, col, pos } or nil.
function H.ghost(bufnr)
  bufnr = bufnr or 0
  local ns = api.nvim_get_namespaces()['fimls.ghost']
  if not ns then
    return nil
  end
  local marks = api.nvim_buf_get_extmarks(bufnr, ns, 0, -1, { details = true })
  local mark = marks[1]
  if not mark then
    return nil
  end
  local details = mark[4]
  local parts = {}
  local first = {}
  for _, chunk in ipairs(details.virt_text or {}) do
    first[#first + 1] = chunk[1]
  end
  parts[1] = table.concat(first)
  for _, line in ipairs(details.virt_lines or {}) do
    local text = {}
    for _, chunk in ipairs(line) do
      text[#text + 1] = chunk[1]
    end
    parts[#parts + 1] = table.concat(text)
  end
  return {
    text = table.concat(parts, '\n'),
    row = mark[2],
    col = mark[3],
    pos = details.virt_text_pos,
    hl = details.virt_text and details.virt_text[1] and details.virt_text[1][2]
      or (details.virt_lines and details.virt_lines[1][1][2]),
    count = #marks,
  }
end

function H.ghost_text()
  local g = H.ghost()
  return g and g.text
end

function H.cursor()
  local pos = api.nvim_win_get_cursor(0)
  return { pos[1], pos[2] }
end

function H.mode()
  return api.nvim_get_mode().mode
end

--- The fimls client attached to the current buffer, once initialized and the server has
--- loaded (fimls answers initialize before that; a request shows it is up).
function H.client(timeout)
  local client
  H.wait(function()
    client = vim.lsp.get_clients({ bufnr = 0, name = 'fimls' })[1]
    return client and client.initialized
  end, timeout or 10000)
  if client and not H.server_ready then
    local answer = client:request_sync('workspace/executeCommand', { command = 'fimls.status' }, timeout or 10000, 0)
    assert(answer and answer.result, 'fimls did not answer fimls.status')
    H.server_ready = true
  end
  return client
end

--- Screen rows as text (what a terminal would show), after a redraw.
function H.screen(rows)
  vim.cmd('redraw!')
  local out = {}
  for row = 1, rows or vim.o.lines do
    local chars = {}
    for col = 1, vim.o.columns do
      chars[#chars + 1] = vim.fn.screenstring(row, col)
    end
    out[#out + 1] = (table.concat(chars):gsub('%s+$', ''))
  end
  return out
end

local function write_result()
  local path = assert(vim.env.FIMLS_TEST_OUT, 'FIMLS_TEST_OUT not set')
  local fd = assert(io.open(path, 'w'))
  fd:write(vim.json.encode(H.result))
  fd:close()
end

--- Run `fn` as the scenario, write the results and quit Neovim.
H.t_loaded = uv.hrtime() / 1e6

function H.run(fn)
  local co = coroutine.create(function()
    local t0 = uv.hrtime()
    local ok, err = xpcall(fn, debug.traceback)
    H.result.timing = { scenario_ms = (uv.hrtime() - t0) / 1e6, startup_ms = t0 / 1e6 - H.t_loaded }
    if not ok then
      table.insert(H.result.errors, tostring(err))
    end
    H.result.done = ok
    H.result.lsp_requests = H.lsp_requests
    H.result.lsp_cancels = H.lsp_cancels
    H.result.notifications = _G.fimls_test_notifications or vim.NIL
    write_result()
    for _, client in ipairs(vim.lsp.get_clients()) do
      if vim.fn.has('nvim-0.11') == 1 then
        client:stop()
      else
        client.stop()
      end
    end
    H.wait(function()
      return #vim.lsp.get_clients() == 0
    end, 2000)
    vim.cmd('qa!')
  end)
  local ok, err = coroutine.resume(co)
  if not ok then
    table.insert(H.result.errors, tostring(err))
    write_result()
    vim.cmd('qa!')
  end
end

return H
